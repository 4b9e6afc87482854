import subprocess
import sys
import threading

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
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp61", torch.device("cpu"))


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
    tokenizer = CompactTokenizer(["a", "photo", "of", "red", "circle"], context_length=10)
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
        out = loaded.model.encode_image(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 64) and np.isfinite(out.numpy()).all()


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
