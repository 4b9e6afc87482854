"""The shard store's index: keys found across many shards, newest copy first, exactly."""

import warnings

import numpy as np
import pytest

from skvlm import _cache_shards as shards
from skvlm import _embedding_cache as store
from skvlm._embedding_cache import CacheCorruptionWarning, cache_info, clear_memory_cache


@pytest.fixture(autouse=True)
def _fresh_stores():
    shards._STORES.clear()
    clear_memory_cache()
    yield
    shards._STORES.clear()
    clear_memory_cache()


def _folder(tmp_path):
    return tmp_path / "skvlm-embeddings-v2" / "shards"


def _write(tmp_path, name, items):
    """A shard written under a chosen name (its time stamp decides which copy is newer)."""
    shards.write_atomically(_folder(tmp_path) / name, shards.encode_shard(items))


def _get(tmp_path, keys):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)
        return store._DiskLayer(tmp_path).get_many(keys)


def _random_keys(rng, n):
    return [rng.bytes(20).hex() for _ in range(n)]


def test_prefixes_are_the_first_eight_key_bytes_big_endian():
    keys = np.array([bytes(range(1, 21)), b"\xff" * 8 + b"\x00" * 12], dtype="S20")
    assert shards.key_prefixes(keys).tolist() == [0x0102030405060708, 2**64 - 1]
    assert shards.key_prefixes(np.empty(0, "S20")).size == 0


def test_a_key_ending_in_nul_bytes_is_found_and_verified(tmp_path):
    # numpy's S20 items drop trailing NULs: a key must not be read back shorter.
    key = "ab" * 18 + "0000"
    store._DiskLayer(tmp_path).put_many({key: np.arange(3, dtype=np.float32)})
    assert _get(tmp_path, [key])[key].tolist() == [0.0, 1.0, 2.0]
    (path,) = _folder(tmp_path).glob("*.shard")
    assert shards.Shard.read(path).key_names() == [key]
    assert cache_info(tmp_path, verify=True)["damaged"] == 0


def test_keys_sharing_their_first_eight_bytes_are_told_apart(tmp_path):
    prefix = "0123456789abcdef"  # 8 bytes: the index's sort key
    a, b, c, absent = (prefix + tail * 24 for tail in "abcd")
    layer = store._DiskLayer(tmp_path)
    layer.put_many({a: np.full(2, 1.0, np.float32), b: np.full(2, 2.0, np.float32)})
    layer.put_many({c: np.full(2, 3.0, np.float32)})
    found = _get(tmp_path, [absent, c, a, b])
    assert {key: vector.tolist() for key, vector in found.items()} == {
        a: [1.0, 1.0],
        b: [2.0, 2.0],
        c: [3.0, 3.0],
    }


@pytest.mark.parametrize("max_runs", [2, 256])
def test_lookups_across_many_shards_match_what_was_written(tmp_path, monkeypatch, max_runs):
    # max_runs=2 merges the shards' runs into one sorted run again and again.
    monkeypatch.setattr(shards, "_MAX_RUNS", max_runs)
    rng = np.random.default_rng(0)
    layer, written = store._DiskLayer(tmp_path), {}
    for size in [1, 5, 40, 3, 17, 1, 60, 8]:
        batch = {key: rng.standard_normal(4).astype(np.float32) for key in _random_keys(rng, size)}
        layer.put_many(batch)
        written.update(batch)
        wanted = [*rng.choice(list(written), size=10), *_random_keys(rng, 3)]  # and 3 absent
        found = layer.get_many(wanted)  # the index grows shard by shard
        assert sorted(found) == sorted(set(wanted) & set(written))
        for key, vector in found.items():
            np.testing.assert_array_equal(vector, written[key])
    shards._STORES.clear()  # a fresh process: every shard indexed at once
    found = _get(tmp_path, list(written))
    assert len(found) == len(written)
    assert all(np.array_equal(found[key], vector) for key, vector in written.items())


def test_the_newest_shard_by_name_wins_whatever_order_it_was_indexed_in(tmp_path):
    key = "5a" * 20
    _write(tmp_path, f"{2:020d}-{'0' * 16}.shard", {key: np.full(2, 2.0, np.float32)})
    assert _get(tmp_path, [key])[key].tolist() == [2.0, 2.0]
    # Written later by a machine whose clock is behind: an older name, indexed last.
    _write(tmp_path, f"{1:020d}-{'0' * 16}.shard", {key: np.full(2, 1.0, np.float32)})
    assert _get(tmp_path, [key])[key].tolist() == [2.0, 2.0]
    _write(tmp_path, f"{3:020d}-{'0' * 16}.shard", {key: np.full(2, 3.0, np.float32)})
    assert _get(tmp_path, [key])[key].tolist() == [3.0, 3.0]


def test_a_damaged_newest_copy_gives_way_to_a_whole_older_one(tmp_path):
    key, other = "6b" * 20, "7c" * 20
    _write(tmp_path, f"{1:020d}-{'0' * 16}.shard", {key: np.full(2, 1.0, np.float32)})
    newer = _folder(tmp_path) / f"{2:020d}-{'0' * 16}.shard"
    _write(tmp_path, newer.name, {key: np.full(2, 2.0, np.float32), other: np.ones(2, np.float32)})
    data = bytearray(newer.read_bytes())
    data[-1] ^= 0x40  # the last payload byte: the entry of `other`, the larger key
    data[-9] ^= 0x40  # and one of `key`'s
    newer.write_bytes(bytes(data))
    with pytest.warns(CacheCorruptionWarning, match="1 damaged") as record:
        found = store._DiskLayer(tmp_path).get_many([key, other])
    assert other in str(record[0].message)  # the one with no whole copy is reported
    assert list(found) == [key] and found[key].tolist() == [1.0, 1.0]


def test_a_shard_removed_by_another_process_is_dropped_from_the_index(tmp_path):
    key = "8d" * 20
    _write(tmp_path, f"{1:020d}-{'0' * 16}.shard", {key: np.full(2, 1.0, np.float32)})
    newer = _folder(tmp_path) / f"{2:020d}-{'0' * 16}.shard"
    _write(tmp_path, newer.name, {key: np.full(2, 2.0, np.float32)})
    assert _get(tmp_path, [key])[key].tolist() == [2.0, 2.0]
    newer.unlink()
    assert _get(tmp_path, [key])[key].tolist() == [1.0, 1.0]
    index, damaged = shards.shard_store(_folder(tmp_path)).refresh()
    assert damaged == [] and [s.path.name for s in index.shards.values()] == [
        f"{1:020d}-{'0' * 16}.shard"
    ]
