import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from skvlm.models import (
    ModelNotFound,
    cached_models,
    list_models,
    load_model,
    resolve_device,
    resolve_precision,
)
from skvlm.models._tokenizer import CompactTokenizer


def test_tiny_model_is_registered_in_open_clip():
    import open_clip

    assert "skvlm-tiny" in list_models()
    assert "skvlm-tiny" in open_clip.list_models()


def test_unknown_model_lists_close_matches():
    with pytest.raises(ModelNotFound, match="skvlm-tiny"):
        load_model("skvlm-tyni", pretrained=None, device="cpu")


def test_unknown_tag_lists_close_matches():
    with pytest.raises(ModelNotFound, match="'openai'"):
        load_model("ViT-B-32", pretrained="opneai", device="cpu")


def test_missing_checkpoint_path_is_named():
    with pytest.raises(FileNotFoundError, match="nowhere/ckpt.pt"):
        load_model("ViT-B-32", pretrained="/nowhere/ckpt.pt", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_clear_value_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_auto_device_and_precision():
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp61", torch.device("cpu"))


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU lists exactly the given /proc/cpuinfo flags."""
    from skvlm.models import _registry

    def install(*flags):
        monkeypatch.setattr(_registry, "_cpu_flags", lambda: frozenset(flags))
        _registry.cpu_has_bf16_units.cache_clear()

    yield install
    _registry.cpu_has_bf16_units.cache_clear()


def test_auto_is_fp32_on_a_cpu_without_bf16_units(cpu_flags):
    cpu_flags("sse4_2", "avx2", "avx512f", "fma")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    # An explicit bf16 still runs there (emulated, slowly); fp16 cannot.
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError, match="fp16.*cannot run on the CPU"):
        resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize("flag", ["amx_bf16", "avx512_bf16"])
def test_auto_is_bf16_on_a_cpu_with_bf16_units(cpu_flags, flag):
    cpu_flags("avx2", flag)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"


@pytest.mark.parametrize("capability, auto", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_on_cuda_is_bf16_from_ampere_on_else_fp16(monkeypatch, capability, auto):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    assert resolve_precision("auto", torch.device("cuda")) == auto
    assert resolve_precision("fp16", torch.device("cuda")) == "fp16"
    if auto == "fp16":
        with pytest.raises(ValueError, match="bf16.*cannot run on Some GPU.*8.0"):
            resolve_precision("bf16", torch.device("cuda"))


def test_half_precision_weights_keep_layer_norms_in_fp32():
    loaded = load_model("skvlm-tiny", pretrained=None, device="cpu", precision="bf16")
    assert loaded.dtype == torch.bfloat16
    linears = [m for m in loaded.model.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in loaded.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert linears and norms
    assert {m.weight.dtype for m in linears} == {torch.bfloat16}
    assert {m.weight.dtype for m in norms} == {torch.float32}
    fp32 = load_model("skvlm-tiny", pretrained=None, device="cpu", precision="fp32")
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}
    assert fp32.fingerprint != loaded.fingerprint


def test_cache_returns_the_same_object_and_keys_on_spec():
    a = load_model("skvlm-tiny", pretrained=None, device="cpu")
    b = load_model("skvlm-tiny", pretrained=None, device="cpu")
    assert a is b
    assert ("clip", "skvlm-tiny", None, "cpu", "fp32") in cached_models()
    assert a.model.training is False


def test_concurrent_loads_build_one_model():
    from skvlm.models import clear_model_cache

    clear_model_cache()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(load_model("skvlm-tiny", None, "cpu")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(r is results[0] for r in results)


def test_a_checkpoint_rewritten_in_place_is_loaded_again(tmp_path):
    import os
    import shutil
    import time

    from skvlm.models import resolve_pretrained

    path = tmp_path / "tiny.safetensors"
    shutil.copyfile(resolve_pretrained("skvlm-tiny", "default"), path)
    first = load_model("skvlm-tiny", str(path), "cpu")
    assert load_model("skvlm-tiny", str(path), "cpu") is first  # untouched: cached
    time.sleep(0.05)  # past the filesystem's timestamp tick
    with open(path, "r+b") as handle:  # flip the sign of the file's last float32
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0x80]))
    second = load_model("skvlm-tiny", str(path), "cpu")
    assert second is not first and second.fingerprint != first.fingerprint


def test_a_config_registered_anew_under_the_name_is_built_again(monkeypatch):
    import copy

    import open_clip.factory

    first = load_model("skvlm-tiny", None, "cpu")
    config = copy.deepcopy(open_clip.factory._MODEL_CONFIGS["skvlm-tiny"])
    config["vision_cfg"]["image_size"] = 48
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "skvlm-tiny", config)
    second = load_model("skvlm-tiny", None, "cpu")
    assert second is not first and second.image_size == (48, 48)
    monkeypatch.undo()
    assert load_model("skvlm-tiny", None, "cpu").image_size == first.image_size


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    from skvlm.models import clear_model_cache

    state = torch.get_rng_state()
    first = load_model("skvlm-tiny", pretrained=None, device="cpu").fingerprint
    clear_model_cache()
    second = load_model("skvlm-tiny", pretrained=None, device="cpu").fingerprint
    assert first == second
    assert torch.equal(state, torch.get_rng_state())


def test_local_checkpoint_loads_and_changes_the_model(tmp_path):
    from safetensors.torch import save_file

    random_init = load_model("skvlm-tiny", pretrained=None, device="cpu")
    state = {k: v.clone() for k, v in random_init.model.state_dict().items()}
    state["visual.proj"] = state["visual.proj"] * 2
    path = tmp_path / "tiny.safetensors"
    save_file(state, str(path))
    loaded = load_model("skvlm-tiny", pretrained=str(path), device="cpu")
    assert loaded.pretrained == str(path.resolve())
    assert loaded.fingerprint != random_init.fingerprint
    torch.testing.assert_close(loaded.model.visual.proj, random_init.model.visual.proj * 2)


def test_a_local_checkpoint_is_loaded_without_drawing_random_weights(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from skvlm.models import _builders, clear_model_cache

    random_init = load_model("skvlm-tiny", pretrained=None, device="cpu", precision="fp32")
    state = {k: v.clone() + 0.5 for k, v in random_init.model.state_dict().items()}
    save_file(state, str(tmp_path / "tiny.safetensors"))
    drawn = []
    real_normal = torch.nn.init.normal_

    def counted_normal(tensor, *args, **kwargs):
        drawn.append(tuple(tensor.shape))
        return real_normal(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "normal_", counted_normal)
    loaded = load_model(
        "skvlm-tiny", pretrained=str(tmp_path / "tiny.safetensors"), device="cpu", precision="fp32"
    )
    assert drawn == []  # skipped while building the model the file fills
    assert torch.nn.init.normal_ is counted_normal  # and put back afterwards
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    clear_model_cache()
    again = load_model("skvlm-tiny", pretrained=None, device="cpu", precision="fp32")
    assert drawn  # a random init still draws its weights, with the same seed
    assert again.fingerprint == random_init.fingerprint
    assert _builders._INIT_LOCK.acquire(blocking=False)  # not left held
    _builders._INIT_LOCK.release()


def test_a_checkpoint_error_while_the_init_is_skipped_puts_the_init_back(tmp_path):
    from safetensors.torch import save_file

    from skvlm.models import CheckpointError

    real = {name: getattr(torch.nn.init, name) for name in ("normal_", "uniform_", "zeros_")}
    random_init = load_model("skvlm-tiny", pretrained=None, device="cpu", precision="fp32")
    state = {k: v.clone() for k, v in random_init.model.state_dict().items()}
    state["visual.proj"][0, 0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"))
    with pytest.raises(CheckpointError, match="visual.proj"):
        load_model("skvlm-tiny", pretrained=str(tmp_path / "nan.safetensors"), device="cpu")
    assert {name: getattr(torch.nn.init, name) for name in real} == real


def test_every_parameter_must_be_finite_after_a_load_a_buffer_only_if_it_was():
    from skvlm.models import CheckpointError
    from skvlm.models._checkpoints import _finite_before_load, _load_checked

    module = torch.nn.Linear(2, 2)
    module.register_buffer("mask", torch.tensor([0.0, float("-inf")]))
    module.register_buffer("scale", torch.ones(2))
    with torch.no_grad():
        module.weight.fill_(float("nan"))  # as memory left unset by a skipped init
    assert _finite_before_load(module) == {
        "weight": True,
        "bias": True,
        "mask": False,
        "scale": True,
    }
    state = {
        "weight": torch.ones(2, 2),
        "bias": torch.zeros(2),
        "mask": torch.tensor([0.0, float("-inf")]),  # meant: it was -inf before
        "scale": torch.ones(2),
    }
    _load_checked(module, "file.safetensors", "toy", state)
    torch.testing.assert_close(module.weight, torch.ones(2, 2))
    for key in ("bias", "scale"):
        bad = {**state, key: torch.tensor([1.0, float("inf")])}
        with pytest.raises(CheckpointError, match=f"tensor '{key}' holds 1 NaN or infinite"):
            _load_checked(module, "file.safetensors", "toy", bad)


def test_missing_network_error_says_so_and_how_to_pass_a_file():
    code = (
        "from skvlm.models import load_model, WeightsUnavailableError\n"
        "try:\n"
        "    load_model('RN50', pretrained='openai', device='cpu')\n"
        "except WeightsUnavailableError as e:\n"
        "    print('ERR', e)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    ).stdout
    assert out.startswith("ERR")
    assert "network" in out and "local path" in out


def test_compact_tokenizer_keeps_eot_highest_and_maps_unknown_words():
    # hash_buckets=0: the first shipped layout, one unk id (tests/test_world.py pins the buckets)
    tokenizer = CompactTokenizer(
        ["a", "photo", "of", "red", "circle"], context_length=10, hash_buckets=0, warn=False
    )
    ids = tokenizer(["a photo of a red circle", "a zebra"])
    assert ids.shape == (2, 10)
    assert int(ids.max()) == tokenizer.eot_id == tokenizer.vocab_size - 1
    # The end-of-text token is where open_clip's argmax pooling looks.
    assert int(ids[0].argmax()) == 7 and int(ids[1].argmax()) == 3
    assert int(ids[1, 2]) == tokenizer.unk_id
    assert tokenizer.unknown_words(["a zebra"]) == ["zebra"]
    assert int(ids[0, -1]) == 0  # padding


def test_tiny_model_size_is_small():
    loaded = load_model("skvlm-tiny", pretrained=None, device="cpu")
    n_params = sum(p.numel() for p in loaded.model.parameters())
    assert 0.5e6 < n_params < 3e6
    assert loaded.embed_dim == 64 and loaded.image_size == (32, 32)
    tokens = loaded.tokenizer(["a photo"])
    assert tokens.shape[1] == 24
    with torch.no_grad():
        out = loaded.model.encode_image(torch.zeros(2, 3, 32, 32, dtype=loaded.dtype))
    assert out.shape == (2, 64) and np.isfinite(out.float().numpy()).all()


def test_default_weights_of_the_tiny_models_are_the_shipped_files(recwarn):
    from skvlm.models import resolve_pretrained
    from skvlm.models._registry import WEIGHTS_DIR

    for name in ("skvlm-tiny", "skvlm-tiny-shared"):
        path = resolve_pretrained(name, "default")
        assert path == str(WEIGHTS_DIR / f"{name}.safetensors")
        loaded = load_model(name, device="cpu")
        assert loaded.pretrained == path
        # The compact vocabulary comes from the file's own metadata.
        assert loaded.tokenizer.vocab_size == loaded.model.token_embedding.num_embeddings
    assert not [w for w in recwarn if "random" in str(w.message)]


# ----------------------------------------------------------------- checkpoint safety


class _RunsCodeWhenUnpickled:
    """A pickle payload that would create ``marker`` if a loader ever executed it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tiny_state():
    model = load_model("skvlm-tiny", pretrained=None, device="cpu").model
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".safetensors", ""])
def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path, suffix):
    from skvlm.models import CheckpointError

    marker = tmp_path / "code-ran"
    state = _tiny_state()
    state["visual.proj"] = _RunsCodeWhenUnpickled(marker)
    path = tmp_path / f"evil{suffix}"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="weights_only=True") as info:
        load_model("skvlm-tiny", pretrained=str(path), device="cpu")
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_torchscript_archive_is_refused_without_running_it(tmp_path):
    from skvlm.models import CheckpointError

    path = tmp_path / "jit.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        load_model("skvlm-tiny", pretrained=str(path), device="cpu")


def test_a_plain_torch_checkpoint_in_a_training_wrapper_loads_like_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = _tiny_state()
    state["visual.proj"] = state["visual.proj"] * 3
    save_file(state, str(tmp_path / "w.safetensors"))
    wrapped = {"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}
    torch.save(wrapped, tmp_path / "w.pt")
    from_safetensors = load_model("skvlm-tiny", str(tmp_path / "w.safetensors"), "cpu")
    from_torch = load_model("skvlm-tiny", str(tmp_path / "w.pt"), "cpu")
    assert from_torch is not from_safetensors
    assert from_torch.fingerprint == from_safetensors.fingerprint
    torch.testing.assert_close(from_torch.model.visual.proj, state["visual.proj"])


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_misshapen_tensor_is_named_with_both_shapes(tmp_path, suffix):
    from safetensors.torch import save_file

    from skvlm.models import CheckpointError

    state = _tiny_state()
    expected_shape = tuple(state["visual.proj"].shape)
    state["visual.proj"] = torch.zeros(expected_shape[0] + 1, expected_shape[1])
    path = tmp_path / f"wrong{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_model("skvlm-tiny", pretrained=str(path), device="cpu")
    message = str(info.value)
    assert "'visual.proj'" in message
    assert str((expected_shape[0] + 1, expected_shape[1])) in message
    assert str(expected_shape) in message


def test_the_first_mismatched_tensor_is_the_one_named(tmp_path):
    from safetensors.torch import save_file

    from skvlm.models import CheckpointError

    state = _tiny_state()
    names = list(state)
    first, later = names[1], names[-1]
    state[first] = torch.zeros(7, 7, 7)
    state[later] = torch.zeros(5)
    save_file(state, str(tmp_path / "two.safetensors"))
    with pytest.raises(CheckpointError, match=re.escape(repr(first))):
        load_model("skvlm-tiny", pretrained=str(tmp_path / "two.safetensors"), device="cpu")


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    from safetensors.torch import save_file

    from skvlm.models import CheckpointError

    state = _tiny_state()
    dropped = next(iter(state))
    del state[dropped]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "keys.safetensors"))
    with pytest.raises(CheckpointError) as info:
        load_model("skvlm-tiny", pretrained=str(tmp_path / "keys.safetensors"), device="cpu")
    assert repr(dropped) in str(info.value) and "'extra.weight'" in str(info.value)


def test_a_truncated_or_foreign_file_is_a_checkpoint_error(tmp_path):
    from safetensors.torch import save_file

    from skvlm.models import CheckpointError

    path = tmp_path / "cut.safetensors"
    save_file(_tiny_state(), str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_model("skvlm-tiny", pretrained=str(path), device="cpu")
    not_weights = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_model("skvlm-tiny", pretrained=str(not_weights), device="cpu")


def test_the_shared_architecture_checks_shapes_too(tmp_path):
    from safetensors.torch import save_file

    from skvlm.models import CheckpointError

    model = load_model("skvlm-tiny-shared", pretrained=None, device="cpu").model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k, v in state.items() if v.ndim == 2)
    state[name] = state[name][:, :-1].contiguous()
    save_file(state, str(tmp_path / "shared.safetensors"))
    with pytest.raises(CheckpointError, match=re.escape(repr(name))):
        load_model(
            "skvlm-tiny-shared", pretrained=str(tmp_path / "shared.safetensors"), device="cpu"
        )


def test_a_timm_checkpoint_loads_without_its_head_and_is_checked(tmp_path):
    pytest.importorskip("timm")
    import timm
    from safetensors.torch import save_file

    from skvlm.models import CheckpointError

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        source = timm.create_model("test_vit", num_classes=10)  # with a classifier head
    state = {k: v.clone() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "vit.safetensors"))
    loaded = load_model("test_vit", str(tmp_path / "vit.safetensors"), "cpu", "fp32", kind="timm")
    backbone = loaded.model.state_dict()
    assert "head.weight" not in backbone
    for key, value in backbone.items():
        torch.testing.assert_close(value, state[key])
    state["cls_token"] = torch.zeros(1, 1, 3)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="'cls_token'"):
        load_model("test_vit", str(tmp_path / "bad.safetensors"), "cpu", kind="timm")


def _save(state, path):
    from safetensors.torch import save_file

    save_file(state, str(path)) if str(path).endswith(".safetensors") else torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".safetensors", ""])
@pytest.mark.parametrize(
    "content",
    [b"", b"hello world\n" * 20, b"not a checkpoint\n" * 20, bytes(range(256)) * 8],
    ids=["empty", "text", "other-text", "binary"],
)
def test_a_file_that_is_no_checkpoint_is_named_and_not_called_unsafe(tmp_path, suffix, content):
    from skvlm.models import CheckpointError

    path = tmp_path / f"junk{suffix}"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(path))) as info:
        load_model("skvlm-tiny", pretrained=str(path), device="cpu")
    assert "Refusing" not in str(info.value)  # nothing in it could run
    assert ("empty" in str(info.value)) == (not content)


def test_the_file_content_not_its_name_picks_the_reader(tmp_path):
    state = _tiny_state()
    state["visual.proj"] = state["visual.proj"] * 2
    reference = load_model("skvlm-tiny", _save(state, tmp_path / "w.safetensors"), "cpu")
    (tmp_path / "safetensors.pt").write_bytes((tmp_path / "w.safetensors").read_bytes())
    torch.save(state, tmp_path / "torch.safetensors")
    for name in ("safetensors.pt", "torch.safetensors"):
        loaded = load_model("skvlm-tiny", str(tmp_path / name), "cpu")
        assert loaded.fingerprint == reference.fingerprint


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, bad, suffix):
    from skvlm.models import CheckpointError

    state = _tiny_state()
    state["visual.proj"][0, 0] = bad
    path = _save(state, tmp_path / f"bad{suffix}")
    with pytest.raises(CheckpointError, match="'visual.proj'.*NaN"):
        load_model("skvlm-tiny", pretrained=path, device="cpu")


def test_float64_weights_past_the_float32_range_are_refused(tmp_path):
    from skvlm.models import CheckpointError

    state = _tiny_state()
    state["visual.proj"] = state["visual.proj"].double()
    state["visual.proj"][0, 0] = 1e300  # finite in the file, infinite once in float32
    path = _save(state, tmp_path / "big.safetensors")
    with pytest.raises(CheckpointError, match="'visual.proj'"):
        load_model("skvlm-tiny", pretrained=path, device="cpu")


def test_a_timm_checkpoint_with_nan_is_refused(tmp_path):
    pytest.importorskip("timm")
    import timm

    from skvlm import ImageEncoder
    from skvlm.models import CheckpointError

    with torch.random.fork_rng(devices=[]):
        state = timm.create_model("test_vit", num_classes=0).state_dict()
    state["cls_token"] = torch.full_like(state["cls_token"], float("nan"))
    path = _save(state, tmp_path / "vit.safetensors")
    encoder = ImageEncoder(model="test_vit", pretrained=path, device="cpu")
    with pytest.raises(CheckpointError, match="'cls_token'"):
        encoder.transform(np.zeros((1, 32, 32, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "make",
    [
        lambda t: t.to(torch.int32),
        lambda t: t.bool(),
        lambda t: t.to(torch.complex64),
        lambda t: t.to_sparse(),
        lambda t: torch.empty_like(t, device="meta"),
    ],
    ids=["int32", "bool", "complex", "sparse", "meta"],
)
@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants:UserWarning")
def test_a_tensor_of_another_kind_is_refused_naming_it(tmp_path, make):
    from skvlm.models import CheckpointError

    state = _tiny_state()
    state["visual.proj"] = make(state["visual.proj"])
    path = _save(state, tmp_path / "kind.pt")
    with pytest.raises(CheckpointError, match=re.escape(path) + ".*'visual.proj'"):
        load_model("skvlm-tiny", pretrained=path, device="cpu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_precisions_load_into_fp32_weights(tmp_path, dtype):
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in _tiny_state().items()}
    loaded = load_model("skvlm-tiny", _save(state, tmp_path / "half.safetensors"), "cpu", "fp32")
    assert loaded.model.visual.proj.dtype == torch.float32
    torch.testing.assert_close(loaded.model.visual.proj, state["visual.proj"].float())


@pytest.mark.parametrize(
    "key, shape",
    [
        ("positional_embedding", (24, 3)),  # another text width
        ("positional_embedding", (5,)),
        ("visual.positional_embedding", (7, 128)),  # not a square patch grid
        ("visual.positional_embedding", (50, 3)),  # a square grid of another width
    ],
)
def test_a_position_embedding_of_another_architecture_is_named_with_its_file_shape(
    tmp_path, key, shape
):
    from skvlm.models import CheckpointError

    state = _tiny_state()
    expected = tuple(state[key].shape)
    state[key] = torch.zeros(shape)
    path = _save(state, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_model("skvlm-tiny", pretrained=path, device="cpu")
    assert repr(key) in str(info.value)
    assert f"{shape} in the file but {expected} in the model" in str(info.value)


def test_a_longer_text_position_embedding_is_still_resized(tmp_path):
    state = _tiny_state()
    width = state["positional_embedding"].shape[1]
    state["positional_embedding"] = torch.randn(30, width)
    loaded = load_model("skvlm-tiny", _save(state, tmp_path / "long.safetensors"), "cpu")
    assert loaded.model.positional_embedding.shape == (24, width)


@pytest.mark.parametrize(
    "model, kind", [("skvlm-tiny", "clip"), ("skvlm-tiny-shared", "clip"), ("test_vit", "timm")]
)
def test_a_directory_or_an_empty_string_is_not_a_checkpoint(tmp_path, model, kind):
    from skvlm.models import CheckpointError

    if kind == "timm":
        pytest.importorskip("timm")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_model(model, pretrained=str(tmp_path), device="cpu", kind=kind)
    with pytest.raises(ValueError, match="pretrained=''"):
        load_model(model, pretrained="", device="cpu", kind=kind)


@pytest.mark.parametrize("model", ["skvlm-tiny", "skvlm-tiny-shared", "ViT-B-32"])
def test_a_missing_checkpoint_file_is_the_same_error_for_every_clip(tmp_path, model):
    from skvlm.models import CheckpointError

    path = str(tmp_path / "nowhere.safetensors")
    with pytest.raises(FileNotFoundError, match=re.escape(path)) as info:
        load_model(model, pretrained=path, device="cpu")
    assert isinstance(info.value, CheckpointError)


def test_a_missing_timm_checkpoint_is_named_without_trying_the_network(tmp_path):
    pytest.importorskip("timm")
    from skvlm.models import CheckpointError

    path = str(tmp_path / "nowhere.safetensors")
    with pytest.raises(FileNotFoundError, match=re.escape(path)) as info:
        load_model("test_vit", pretrained=path, device="cpu", kind="timm")
    assert isinstance(info.value, CheckpointError)


@pytest.mark.parametrize("model", ["skvlm-tiny", "skvlm-tiny-shared"])
def test_a_numpy_archive_for_a_model_that_is_not_siglip_is_a_checkpoint_error(tmp_path, model):
    from skvlm.models import CheckpointError

    state = load_model(model, pretrained=None, device="cpu", precision="fp32").model.state_dict()
    np.savez(tmp_path / "w.npz", **{key: value.numpy() for key, value in state.items()})
    (tmp_path / "w.pt").write_bytes((tmp_path / "w.npz").read_bytes())
    for name in ("w.npz", "w.pt"):  # known by its name, and by its content
        with pytest.raises(CheckpointError, match="npz"):
            load_model(model, pretrained=str(tmp_path / name), device="cpu")


def test_concurrent_transforms_from_joblib_threads_load_the_model_once(monkeypatch, tiny_images):
    from joblib import Parallel, delayed

    from skvlm import CLIPEncoder
    from skvlm.models import _loading, clear_model_cache

    clear_model_cache()
    builds = []
    real_build = _loading._build_open_clip

    def slow_counted_build(name, pretrained, *args):
        builds.append(name)
        time.sleep(0.2)  # widen the window in which a racing second load would start
        return real_build(name, pretrained, *args)

    monkeypatch.setattr(_loading, "_build_open_clip", slow_counted_build)
    # (On Python < 3.12 functools.cached_property serialises first accesses across
    # instances; the per-key lock in load_model is what makes this hold on 3.12+,
    # and test_concurrent_loads_build_one_model races load_model itself.)
    images, _ = tiny_images
    # fp32: the threads share the memory cache, so a row may be encoded in a batch of
    # another size than the reference's, and bf16 kernels on AMX CPUs round a row
    # differently with its batch's size (up to 1e-3 measured).
    tiny = {"model": "skvlm-tiny", "device": "cpu", "precision": "fp32"}
    encoders = [CLIPEncoder(**tiny) for _ in range(8)]
    outputs = Parallel(n_jobs=8, backend="threading")(
        delayed(encoder.transform)(images[i : i + 3]) for i, encoder in enumerate(encoders)
    )
    assert builds == ["skvlm-tiny"]
    assert len({id(encoder._loaded) for encoder in encoders}) == 1
    reference = CLIPEncoder(**tiny, cache=None).transform(images[:10])
    for i, output in enumerate(outputs):
        np.testing.assert_allclose(output, reference[i : i + 3], atol=1e-6)
