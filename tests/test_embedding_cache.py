"""The on-disk embedding cache: format, atomic writes, damage detection, keys, sharing."""

import multiprocessing
import os
import pickle
import shutil
import warnings

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline

from skvlm import CLIPEncoder, _cache_shards
from skvlm import __main__ as cli
from skvlm import _embedding_cache as store
from skvlm.__main__ import main
from skvlm._embedding_cache import clear_memory_cache
from skvlm.encoders import CacheCorruptionWarning, CacheWriteWarning, cache_info, clear_cache

TINY = dict(model="skvlm-tiny", device="cpu")


class _Entry:
    """Where one entry lives in a shard file: its key and its payload's byte range."""

    def __init__(self, path, key, offset, width):
        self.path, self.key, self.offset, self.width = path, key, offset, width

    def flip_a_payload_bit(self):
        data = bytearray(self.path.read_bytes())
        data[self.offset + 3] ^= 0x10
        self.path.write_bytes(bytes(data))


def _shards(folder):
    return sorted((folder / "skvlm-embeddings-v2" / "shards").glob("*.shard"))


def _entries(folder):
    """Every entry of every (readable) shard, oldest shard first, rows in order."""
    from skvlm._cache_shards import Shard

    entries = []
    for path in _shards(folder):
        shard = Shard.read(path)
        width = 4 * shard.dim
        entries += [
            _Entry(path, key, shard.data_offset + row * width, width)
            for row, key in enumerate(shard.key_names())
        ]
    return entries


def _encode_cold(images, folder, **params):
    """Encode through the disk layer only (the process memory layer emptied first)."""
    clear_memory_cache()
    return CLIPEncoder(**TINY, cache=str(folder), **params).transform(images)


# ----------------------------------------------------------------------------- format


def test_entry_layout_is_magic_count_checksum_then_float32_payload():
    key = "ab" * 20
    vector = np.array([1.0, -2.5, 0.0], dtype=np.float64)
    data = store._encode_entry(key, vector)
    assert data[:8] == b"SKVLMEV2"
    assert int.from_bytes(data[8:12], "little") == 3
    assert data[28:] == np.array([1.0, -2.5, 0.0], dtype="<f4").tobytes()
    decoded = store._decode_entry(key, data)
    assert decoded.dtype == np.float32 and decoded.tolist() == [1.0, -2.5, 0.0]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda data: data[:-2], "truncated"),
        (lambda data: data[:10], "bad header"),
        (lambda data: b"", "bad header"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "checksum"),
        (lambda data: data + b"\0\0\0\0", "truncated"),
    ],
)
def test_damaged_bytes_are_rejected_with_a_reason(damage, reason):
    key = "cd" * 20
    data = store._encode_entry(key, np.arange(4, dtype=np.float32))
    assert reason in store._decode_entry(key, damage(data))


def test_an_entry_under_another_key_fails_its_checksum():
    data = store._encode_entry("aa" * 20, np.ones(4, dtype=np.float32))
    assert store._decode_entry("bb" * 20, data) == "checksum mismatch"


def test_a_failed_write_leaves_neither_entry_nor_temporary_file(tmp_path, monkeypatch):
    layer = store._DiskLayer(tmp_path)

    def crash(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        layer.put_many({"ef" * 20: np.ones(8, dtype=np.float32)})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_reader_during_a_write_sees_the_old_entry_or_none(tmp_path, monkeypatch):
    layer, key = store._DiskLayer(tmp_path), "ab" * 20
    seen = []
    real_replace = os.replace

    def replace_after_a_read(source, destination):
        # The new bytes are complete in the temporary file; the entry is not renamed yet.
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheCorruptionWarning)
            seen.append(store._DiskLayer(tmp_path).get_many([key]).get(key))
        real_replace(source, destination)

    monkeypatch.setattr(store.os, "replace", replace_after_a_read)
    layer.put_many({key: np.full(6, 1.0, dtype=np.float32)})
    layer.put_many({key: np.full(6, 2.0, dtype=np.float32)})
    assert seen[0] is None and seen[1].tolist() == [1.0] * 6
    assert layer.get_many([key])[key].tolist() == [2.0] * 6


def test_entries_follow_the_umask_so_a_group_can_share_the_folder(tmp_path):
    old = os.umask(0o002)
    try:
        store._DiskLayer(tmp_path).put_many({"aa" * 20: np.ones(3, dtype=np.float32)})
    finally:
        os.umask(old)
    (shard,) = tmp_path.rglob("*.shard")
    assert shard.stat().st_mode & 0o777 == 0o664


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_folder_still_returns_embeddings_with_a_warning(tmp_path, tiny_images):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    _encode_cold(images[:1], folder)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    try:
        with pytest.warns(CacheWriteWarning, match="not stored"):
            out = _encode_cold(images[:3], folder)
    finally:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
    np.testing.assert_allclose(out, CLIPEncoder(**TINY).transform(images[:3]), atol=1e-6)


def test_a_failed_cache_write_warns_and_keeps_the_result(tmp_path, tiny_images, monkeypatch):
    images, _ = tiny_images

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    from skvlm import _cache_shards

    monkeypatch.setattr(_cache_shards, "write_atomically", full_disk)
    with pytest.warns(CacheWriteWarning, match="No space left") as record:
        out = _encode_cold(images[:2], tmp_path / "cache")
    assert record[0].filename == __file__  # blamed on the caller, not on skvlm's internals
    np.testing.assert_allclose(out, CLIPEncoder(**TINY).transform(images[:2]), atol=1e-6)
    assert _entries(tmp_path / "cache") == []


# ----------------------------------------------------------------------------- damage


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _truncate(entries, tmp_path):
    """Cut the shard inside the third of its four entries: the last two are torn."""
    path = entries[0].path
    path.write_bytes(path.read_bytes()[: entries[2].offset + 7])
    return 2, [entries[2], entries[3]]


def _flip_payload_bits(entries, tmp_path):
    for entry in entries[:2]:
        entry.flip_a_payload_bit()
    return 2, entries[:2]


def _empty(entries, tmp_path):
    entries[0].path.write_bytes(b"")
    return 1, entries


def _pickle(entries, tmp_path):
    entries[0].path.write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(tmp_path / "code-ran")))
    return 1, entries


@pytest.mark.parametrize("damage", [_truncate, _flip_payload_bits, _empty, _pickle])
def test_a_damaged_entry_is_recomputed_rewritten_and_reported_once(tmp_path, tiny_images, damage):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    # fp32: only the damaged rows are re-encoded, as a smaller batch, and bf16 kernels
    # on AMX CPUs round a row differently with its batch's size (up to 1e-3 measured).
    fp32 = {"precision": "fp32"}
    expected = CLIPEncoder(**TINY, **fp32).transform(images[:4])
    _encode_cold(images[:4], folder, **fp32)
    entries = _entries(folder)
    assert len(entries) == 4 and len({entry.path for entry in entries}) == 1
    n_reported, damaged = damage(entries, tmp_path)

    with pytest.warns(CacheCorruptionWarning, match=f"{n_reported} damaged") as record:
        again = _encode_cold(images[:4], folder, **fp32)
    (warning,) = [w for w in record if w.category is CacheCorruptionWarning]
    assert str(entries[0].path) in str(warning.message)
    if n_reported == 2:  # the damaged entries are named, not only their file
        assert any(entry.key in str(warning.message) for entry in damaged)
    assert "recomputed" in str(warning.message)
    assert warning.filename == __file__  # points at the user's transform call
    np.testing.assert_allclose(again, expected, atol=1e-6)
    assert not (tmp_path / "code-ran").exists()  # the pickle was never loaded
    assert cache_info(folder, verify=True)["damaged"] == 0  # rewritten whole
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)
        np.testing.assert_allclose(_encode_cold(images[:4], folder, **fp32), expected, atol=1e-6)
        _cache_shards._STORES.clear()  # a fresh process: the damaged shard is not reported again
        np.testing.assert_allclose(_encode_cold(images[:4], folder, **fp32), expected, atol=1e-6)


def test_a_flipped_key_byte_fails_the_header_checksum(tmp_path, tiny_images):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    expected = CLIPEncoder(**TINY).transform(images[:3])
    _encode_cold(images[:3], folder)
    (path,) = _shards(folder)
    data = bytearray(path.read_bytes())
    data[32 + 5] ^= 0x01  # inside the first key of the header
    path.write_bytes(bytes(data))
    with pytest.warns(CacheCorruptionWarning, match="header checksum"):
        again = _encode_cold(images[:3], folder)
    np.testing.assert_allclose(again, expected, atol=1e-6)
    info = cache_info(folder, verify=True)
    assert info["entries"] == 3 and info["damaged"] == 0 and info["damaged_files"] == 1


def test_an_entry_copied_under_another_name_is_not_returned(tmp_path, tiny_images):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    expected = CLIPEncoder(**TINY).transform(images[:2])
    _encode_cold(images[:2], folder)
    first, second = _entries(folder)
    data = bytearray(first.path.read_bytes())  # both slots now hold the first's vector
    data[second.offset : second.offset + second.width] = data[
        first.offset : first.offset + first.width
    ]
    first.path.write_bytes(bytes(data))
    clear_memory_cache()
    pipeline = make_pipeline(CLIPEncoder(**TINY, cache=str(folder)))
    with pytest.warns(CacheCorruptionWarning, match="checksum") as record:
        again = pipeline.fit_transform(images[:2])
    assert record[0].filename == __file__  # past sklearn's Pipeline too, at this line
    np.testing.assert_allclose(again, expected, atol=1e-6)
    assert not np.allclose(again[0], again[1])


# ----------------------------------------------------------------------------- keys


def _spec(**params):
    return CLIPEncoder(**{**TINY, **params})._spec_fingerprint(augment=True)


def test_every_setting_that_changes_the_numbers_changes_the_key(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    from skvlm.models._registry import resolve_precision, resolve_pretrained

    shipped = resolve_pretrained("skvlm-tiny", "default")
    shutil.copyfile(shipped, tmp_path / "same.safetensors")
    state = load_file(shipped)
    state["visual.proj"] = state["visual.proj"] * 2
    save_file(state, str(tmp_path / "other.safetensors"))

    base = _spec(n_augmentations=2, random_state=0)
    # The key holds the resolved precision: "auto" shares entries with what it resolves to.
    auto = resolve_precision("auto", torch.device("cpu"))
    assert base == _spec(precision=auto, n_augmentations=2, random_state=0)
    other_precision = "fp32" if auto != "fp32" else "bf16"
    variants = {
        "model": _spec(model="skvlm-tiny-shared", n_augmentations=2, random_state=0),
        "random init": _spec(pretrained=None, n_augmentations=2, random_state=0),
        "other file": _spec(
            pretrained=str(tmp_path / "other.safetensors"), n_augmentations=2, random_state=0
        ),
        "precision": _spec(precision=other_precision, n_augmentations=2, random_state=0),
        "augmentations": _spec(n_augmentations=3, random_state=0),
        "seed": _spec(n_augmentations=2, random_state=1),
    }
    import copy

    import open_clip.factory

    config = copy.deepcopy(open_clip.factory._MODEL_CONFIGS["skvlm-tiny"])
    config["vision_cfg"]["image_size"] = 48  # registered anew under the same name
    with monkeypatch.context() as patch:
        patch.setitem(open_clip.factory._MODEL_CONFIGS, "skvlm-tiny", config)
        variants["re-registered config"] = _spec(n_augmentations=2, random_state=0)
    for name, spec in variants.items():
        assert spec != base, name
    # Weights are identified by content: a byte-identical copy of the shipped file
    # shares the cache, an edited one does not.
    copy = _spec(pretrained=str(tmp_path / "same.safetensors"), n_augmentations=2, random_state=0)
    assert copy == base

    import importlib.metadata

    from skvlm import encoders

    real_version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda name: "999.0" if name == "torch" else real_version(name),
    )
    encoders._library_versions.cache_clear()
    try:
        assert _spec(n_augmentations=2, random_state=0) != base
    finally:
        monkeypatch.undo()
        encoders._library_versions.cache_clear()
    assert _spec(n_augmentations=2, random_state=0) == base


def test_a_checkpoint_rewritten_in_place_with_its_old_mtime_changes_the_key(tmp_path):
    import time

    from skvlm.models._registry import resolve_pretrained

    path = tmp_path / "weights.safetensors"
    shutil.copyfile(resolve_pretrained("skvlm-tiny", "default"), path)
    before, old = _spec(pretrained=str(path)), os.stat(path)
    time.sleep(0.05)  # past the filesystem's timestamp tick
    with open(path, "r+b") as handle:  # the last weight's bytes, same inode and size
        handle.seek(-4, os.SEEK_END)
        tail = handle.read(4)
        handle.seek(-4, os.SEEK_END)
        handle.write(bytes(b ^ 0xFF for b in tail))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))  # the old mtime, as cp -p leaves
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert _spec(pretrained=str(path)) != before


def test_a_random_state_instance_never_shares_entries_with_another(tmp_path, tiny_images):
    # Every RandomState has the repr "RandomState(MT19937)": as part of a key, seeds 0
    # and 1 would read each other's augmented embeddings.
    images, _ = tiny_images
    folder = str(tmp_path / "cache")

    def augmented(seed, cache):
        encoder = CLIPEncoder(
            **TINY, n_augmentations=2, random_state=np.random.RandomState(seed), cache=cache
        )
        return encoder.fit_transform(images[:2])

    first = augmented(0, folder)
    second = augmented(1, folder)
    np.testing.assert_allclose(second, augmented(1, None), atol=1e-6)
    assert not np.allclose(first, second, atol=1e-4)


def test_a_file_rewritten_while_it_is_encoded_is_not_filed_under_its_old_key(
    tmp_path, tiny_images, monkeypatch
):
    from PIL import Image

    images, _ = tiny_images
    first, second, path = tmp_path / "first.png", tmp_path / "second.png", tmp_path / "x.png"
    Image.fromarray(images[0]).save(first)
    Image.fromarray(images[12]).save(second)
    expected_first, expected_second = CLIPEncoder(**TINY).transform([str(first), str(second)])
    shutil.copyfile(first, path)
    folder = str(tmp_path / "cache")

    real_keys = CLIPEncoder._item_keys

    def keys_then_rewrite(self, *args, **kwargs):
        keys = real_keys(self, *args, **kwargs)
        shutil.copyfile(second, path)  # after the key was made, before the decode
        return keys

    monkeypatch.setattr(CLIPEncoder, "_item_keys", keys_then_rewrite)
    during = CLIPEncoder(**TINY, cache=folder).transform([str(path)])
    np.testing.assert_allclose(during[0], expected_second, atol=1e-6)  # what it holds now
    monkeypatch.undo()
    shutil.copyfile(first, path)
    # The first content's key must not hold the second content's embedding.
    np.testing.assert_allclose(_encode_cold([str(path)], folder)[0], expected_first, atol=1e-6)


def test_normalize_true_and_false_share_a_folder_and_both_are_right(tmp_path, tiny_images):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    raw = CLIPEncoder(**TINY, normalize=False).transform(images[:3])
    unit = CLIPEncoder(**TINY, normalize=True).transform(images[:3])
    _encode_cold(images[:3], folder, normalize=False)
    np.testing.assert_allclose(_encode_cold(images[:3], folder, normalize=True), unit, atol=1e-6)
    np.testing.assert_allclose(_encode_cold(images[:3], folder, normalize=False), raw, atol=1e-6)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


# ----------------------------------------------------------------------------- processes


def _encode_in_a_child(folder, images, start):
    import torch

    torch.set_num_threads(1)
    # Load the model first (seconds, and uneven between the children), so that after
    # the barrier both are encoding and writing the same entries at the same time.
    CLIPEncoder(**TINY).transform(images[:1])
    start.wait(timeout=120)
    CLIPEncoder(**TINY, cache=folder).transform(images)


def test_two_processes_filling_one_folder_leave_whole_correct_entries(tmp_path, tiny_images):
    images, _ = tiny_images
    folder = str(tmp_path / "shared")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    children = [
        context.Process(target=_encode_in_a_child, args=(folder, images, start)) for _ in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=300)
    assert [child.exitcode for child in children] == [0, 0]

    info = cache_info(folder, verify=True)
    assert info["entries"] == len(images)
    assert info["damaged"] == 0 and info["temporary_files"] == 0
    expected = CLIPEncoder(**TINY).transform(images)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)
        np.testing.assert_allclose(_encode_cold(images, folder), expected, atol=1e-6)


# ----------------------------------------------------------------------------- maintenance


def _disk_bytes(paths):
    return sum(path.stat().st_blocks * 512 for path in paths)


def test_info_and_clear_touch_only_skvlm_files(tmp_path, tiny_images, capsys):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    _encode_cold(images[:5], folder)
    entries = _entries(folder)
    shards = folder / "skvlm-embeddings-v2" / "shards"
    (shards / ".tmp-0123456789abcdef").write_bytes(b"half")  # a killed writer's
    # Look-alikes of skvlm's names that skvlm never writes: not counted, never deleted.
    mine = [
        shards / "notes.txt",
        shards / "1234.shard",
        shards / ".tmp-notes",
        folder / "skvlm-embeddings-v2" / "zz" / ("a" * 40 + ".emb"),
    ]
    mine[-1].parent.mkdir()
    for path in mine:
        path.write_text("mine")
    (folder / "skvlm-embeddings.sqlite").write_bytes(b"old")
    entries[2].flip_a_payload_bit()

    info = cache_info(folder, verify=True)
    assert info["entries"] == 5 and info["temporary_files"] == 1 and info["damaged"] == 1
    assert info["files"] == 1 and info["legacy_sqlite"] is True
    written = [entries[0].path, shards / ".tmp-0123456789abcdef"]
    assert info["bytes"] == _disk_bytes(written)  # blocks allocated, not sizes
    assert info["apparent_bytes"] == sum(path.stat().st_size for path in written)

    assert main(["cache", "info", str(folder), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "entries: 5" in out and "damaged entries: 1" in out and "temporary files: 1" in out
    assert f"size: {cli._size(info['bytes'])}\n" in out

    assert main(["cache", "clear", str(folder)]) == 0
    assert "removed 3 files" in capsys.readouterr().out  # shard, temporary file, sqlite
    assert all(path.read_text() == "mine" for path in mine)
    assert not any(path.exists() for path in written)
    assert not (folder / "skvlm-embeddings.sqlite").exists()
    # The memory layer was emptied too: the next encode goes back to the model.
    again = CLIPEncoder(**TINY, cache=str(folder)).transform(images[:5])
    assert cache_info(folder)["entries"] == 5 and np.isfinite(again).all()


def test_sizes_are_printed_in_binary_units():
    assert [cli._size(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3, 5000 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
        "5000.0 GiB",
    ]


def test_a_joblib_memory_location_is_found(tmp_path, tiny_images):
    from joblib import Memory

    images, _ = tiny_images
    CLIPEncoder(**TINY, cache=Memory(tmp_path, verbose=0)).transform(images[:2])
    assert cache_info(tmp_path)["entries"] == 2
    assert clear_cache(tmp_path)["entries_removed"] == 2


def test_a_folder_without_a_cache_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    assert main(["cache", "clear", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no skvlm embedding cache" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "photo.jpg").exists()
    with pytest.raises(ValueError, match="no skvlm embedding cache"):
        cache_info(tmp_path / "missing")
    assert os.listdir(tmp_path) == ["photo.jpg"]


# ----------------------------------------------------------------------------- audit


def test_a_checksum_valid_non_finite_entry_is_recomputed_not_returned(tmp_path, tiny_images):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    expected = CLIPEncoder(**TINY).transform(images[:3])
    _encode_cold(images[:3], folder)
    from skvlm._cache_shards import encode_shard

    entries = _entries(folder)
    data = entries[0].path.read_bytes()
    vectors = {e.key: np.frombuffer(data[e.offset : e.offset + e.width], "<f4") for e in entries}
    vectors[entries[0].key] = np.full(expected.shape[1], np.nan, dtype=np.float32)
    entries[0].path.write_bytes(encode_shard(vectors))  # valid checksums, a NaN vector
    assert cache_info(folder, verify=True)["damaged"] == 1

    with pytest.warns(CacheCorruptionWarning, match="1 damaged.*non-finite"):
        again = _encode_cold(images[:3], folder)
    np.testing.assert_allclose(again, expected, atol=1e-6)
    assert cache_info(folder, verify=True)["damaged"] == 0  # rewritten with the real vector


def test_non_finite_vectors_are_not_stored(tmp_path):
    cache = store.EmbeddingCache(tmp_path)
    finite, nan, inf = "a1" * 20, "b2" * 20, "c3" * 20
    cache.put_many(
        {
            finite: np.ones(4, dtype=np.float32),
            nan: np.array([1.0, np.nan, 0.0, 0.0], dtype=np.float32),
            inf: np.array([np.inf, 0.0, 0.0, 0.0], dtype=np.float32),
        }
    )
    clear_memory_cache()
    assert list(store.EmbeddingCache(tmp_path).get_many([finite, nan, inf])) == [finite]
    assert list(cache.get_many([finite, nan, inf])) == [finite]


def test_a_repeated_item_with_a_damaged_entry_is_reported_as_one(tmp_path, tiny_images):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    _encode_cold(images[:1], folder)
    (entry,) = _entries(folder)
    entry.path.write_bytes(entry.path.read_bytes()[: entry.offset + 7])
    with pytest.warns(CacheCorruptionWarning, match="^1 damaged embedding cache entry "):
        again = _encode_cold(np.stack([images[0]] * 3), folder)
    np.testing.assert_allclose(
        again, CLIPEncoder(**TINY).transform(np.stack([images[0]] * 3)), atol=1e-6
    )


def test_the_memory_layer_keeps_its_own_read_only_copy():
    cache, key = store.EmbeddingCache(None), "d4" * 20
    vector = np.arange(4, dtype=np.float32)
    cache.put_many({key: vector})
    vector[:] = -1  # the caller reuses its buffer
    held = cache.get_many([key])[key]
    assert held.tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="read-only"):
        held[0] = 5.0
    clear_memory_cache()


def test_a_tilde_in_the_cache_path_means_the_home_folder(tmp_path, tiny_images, monkeypatch):
    images, _ = tiny_images
    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(), elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    CLIPEncoder(**TINY, cache="~/.cache/skvlm").transform(images[:2])
    assert len(_entries(home / ".cache" / "skvlm")) == 2
    assert list(elsewhere.iterdir()) == []  # no folder literally named '~'
    assert cache_info("~/.cache/skvlm")["entries"] == 2
    assert clear_cache("~/.cache/skvlm")["entries_removed"] == 2


def test_a_file_given_as_the_cache_folder_is_a_clear_error(tmp_path, tiny_images):
    images, _ = tiny_images
    file = tmp_path / "embeddings.npy"
    file.write_bytes(b"not a folder")
    for cache in (file, file / "sub"):
        with pytest.raises(ValueError, match=f"{str(file)!r} is not a folder"):
            CLIPEncoder(**TINY, cache=str(cache)).transform(images[:1])
    assert file.read_bytes() == b"not a folder"


def test_an_empty_cache_path_is_refused_not_the_working_directory(
    tmp_path, tiny_images, monkeypatch
):
    images, _ = tiny_images
    monkeypatch.chdir(tmp_path)
    for cache in ("", "  "):
        with pytest.raises(ValueError, match="cache='' is empty"):
            CLIPEncoder(**TINY, cache=cache).transform(images[:1])
    assert list(tmp_path.iterdir()) == []  # nothing was written where it ran


def test_a_cache_folder_that_cannot_be_created_warns_and_returns(
    tmp_path, tiny_images, monkeypatch
):
    import pathlib

    images, _ = tiny_images
    expected = CLIPEncoder(**TINY).transform(images[:2])
    folder = tmp_path / "not-allowed"
    real_mkdir = pathlib.Path.mkdir

    def refuse_inside(path, *args, **kwargs):  # as a folder without write permission does
        if str(path).startswith(str(folder)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse_inside)
    clear_memory_cache()
    with pytest.warns(CacheWriteWarning, match="Permission denied"):
        out = CLIPEncoder(**TINY, cache=str(folder)).transform(images[:2])
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_info_survives_a_file_that_goes_away_while_it_counts(tmp_path, tiny_images, monkeypatch):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    _encode_cold(images[:2], folder)
    shards = _shards(folder)
    real_store_files = store._store_files

    def listed_then_renamed(root):  # a writer renames its temporary file meanwhile
        found = real_store_files(root)
        found["temporary"].append(shards[0].parent / ".tmp-0123456789abcdef")
        return found

    monkeypatch.setattr(store, "_store_files", listed_then_renamed)
    info = cache_info(folder)
    assert info["bytes"] == _disk_bytes(shards)


def test_the_one_file_per_entry_store_of_earlier_versions_is_still_read(
    tmp_path, tiny_images, count_forward
):
    images, _ = tiny_images
    folder = tmp_path / "cache"
    expected = CLIPEncoder(**TINY).transform(images[:3])
    _encode_cold(images[:3], folder)
    entries = _entries(folder)
    data = entries[0].path.read_bytes()
    root = folder / "skvlm-embeddings-v2"
    for entry in entries:  # the same vectors in the layout earlier versions wrote
        path = root / entry.key[:2] / f"{entry.key}.emb"
        path.parent.mkdir(exist_ok=True)
        vector = np.frombuffer(data[entry.offset : entry.offset + entry.width], "<f4")
        path.write_bytes(store._encode_entry(entry.key, vector))
    entries[0].path.unlink()
    info = cache_info(folder, verify=True)
    assert (info["entries"], info["files"], info["damaged"]) == (3, 3, 0)
    counts = count_forward(CLIPEncoder(**TINY)._loaded)
    np.testing.assert_allclose(_encode_cold(images[:3], folder), expected, atol=1e-6)
    assert counts["image"] == 0  # every vector came from the old entries
    assert clear_cache(folder)["entries_removed"] == 3
