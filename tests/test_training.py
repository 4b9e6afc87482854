import math

import numpy as np
import pytest
import torch

from skvlm.datasets import caption_vocabulary, make_scenes
from skvlm.models._tokenizer import CompactTokenizer
from skvlm.models.shared_clip import build_shared_clip
from skvlm.training import (
    ContrastiveTrainer,
    caption_distance,
    clip_loss,
    cosine_schedule,
    images_to_tensor,
    imsep_loss,
    siglip_loss,
)

E = math.e


# ------------------------------------------------------------------------------ losses


def test_clip_loss_pinned():
    # Orthogonal unit features, scale 1: each row's logits are [1, 0].
    eye = torch.eye(2)
    assert float(clip_loss(eye, eye, 1.0)) == pytest.approx(math.log(1 + 1 / E), abs=1e-6)
    # 3 pairs, scale 2, text 1 matches image 0 as well as its own image.
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    # logits = 2 * image @ text.T = [[2, 2, -2], [0, 0, 0], [-2, -2, 2]]
    image_to_text = (
        math.log(2 * E**2 + E**-2) - 2 + math.log(3) + math.log(2 * E**-2 + E**2) - 2
    ) / 3
    text_to_image = (
        math.log(E**2 + 1 + E**-2)
        - 2
        + math.log(E**2 + 1 + E**-2)
        - 0
        + math.log(E**-2 + 1 + E**2)
        - 2
    ) / 3
    expected = 0.5 * (image_to_text + text_to_image)
    assert float(clip_loss(image, text, 2.0)) == pytest.approx(expected, abs=1e-6)


def test_siglip_loss_pinned():
    eye = torch.eye(2)
    # Two positives -log σ(1), two negatives -log σ(-0) = log 2, divided by n = 2.
    expected = (2 * math.log(1 + 1 / E) + 2 * math.log(2)) / 2
    assert float(siglip_loss(eye, eye, 1.0, 0.0)) == pytest.approx(expected, abs=1e-6)
    # With a bias of -1, scale 2: positives z = 1, negatives z = -1.
    expected = (2 * math.log(1 + E**-1) + 2 * math.log(1 + E**-1)) / 2
    assert float(siglip_loss(eye, eye, 2.0, -1.0)) == pytest.approx(expected, abs=1e-6)


def test_imsep_hand_checked_3x3():
    # Images 0 and 2 coincide, image 1 is orthogonal; texts equal the images.
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    distance = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 1.0], [0.5, 1.0, 0.0]])
    # ŷ_vsep = diag(M) + V ⊙ D = [[1, 0, .5], [0, 1, 0], [.5, 0, 1]] (scale 1).
    row_0 = math.log(E + 1 + math.exp(0.5)) - 1
    row_1 = math.log(E + 2) - 1
    imsep = (2 * row_0 + row_1) / 3
    # M = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]: H(M) = H(Mᵀ).
    cross = 2 * (2 * (math.log(2 * E + 1) - 1) + row_1) / 3
    assert imsep == pytest.approx(0.6373280, abs=1e-6)
    assert cross == pytest.approx(1.5169562, abs=1e-6)
    only_imsep = imsep_loss(features, features, 1.0, distance, alpha=0.0, beta=1.0)
    assert float(only_imsep) == pytest.approx(imsep, abs=1e-6)
    total = imsep_loss(features, features, 1.0, distance)  # alpha=1, beta=0.5
    assert float(total) == pytest.approx(cross + 0.5 * imsep, abs=1e-6)
    assert float(total) == pytest.approx(1.8356202, abs=1e-6)


def test_imsep_with_beta_zero_is_the_clip_loss():
    rng = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(6, 4, generator=rng), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(6, 4, generator=rng), dim=-1)
    distance = torch.rand(6, 6, generator=rng)
    reference = clip_loss(image, text, 3.0)
    # Eq. 12 sums the two cross-entropies: twice the (averaged) CLIP loss of Eq. 4.
    assert float(imsep_loss(image, text, 3.0, distance, alpha=0.5, beta=0.0)) == pytest.approx(
        float(reference), abs=1e-6
    )
    assert float(imsep_loss(image, text, 3.0, distance, beta=0.0)) == pytest.approx(
        2 * float(reference), abs=1e-6
    )


def test_imsep_ignores_the_diagonal_of_the_distance():
    features = torch.nn.functional.normalize(
        torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    distance = torch.rand(4, 4, generator=torch.Generator().manual_seed(2))
    zero_diagonal = distance.clone().fill_diagonal_(0)
    assert float(imsep_loss(features, features, 2.0, distance)) == pytest.approx(
        float(imsep_loss(features, features, 2.0, zero_diagonal))
    )


def test_imsep_rejects_a_distance_of_the_wrong_shape():
    with pytest.raises(ValueError, match="semantic_distance must have shape"):
        imsep_loss(torch.eye(3), torch.eye(3), 1.0, np.zeros((2, 2)))


def test_caption_distance():
    captions = ["a photo of a red circle.", "a red square.", "A red circle", "a photo of a thing."]
    distance = caption_distance(captions)
    np.testing.assert_allclose(distance, distance.T)
    np.testing.assert_array_equal(np.diag(distance), 0)
    assert distance[0, 2] == 0  # same content words, different template
    assert distance[0, 1] == pytest.approx(2 / 3)  # {red, circle} vs {red, square}
    assert distance[0, 3] == 1  # nothing shared ("thing" is a stop word, so an empty set)
    assert distance[3, 3] == 0


def test_sentence_encoder_distance_needs_the_text_extra():
    from skvlm.training import SentenceEncoderDistance

    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"skvlm\[text\]"):
            SentenceEncoderDistance()(["a", "b"])
    else:
        pytest.skip("sentence-transformers is installed; no offline model to test with")


def test_cosine_schedule():
    assert cosine_schedule(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert cosine_schedule(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert cosine_schedule(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert cosine_schedule(100, 100, 10, 1.0) == pytest.approx(0.0)


# ------------------------------------------------------------------------- SharedCLIP

WORDS = caption_vocabulary()


@pytest.fixture(scope="module")
def tokenizer():
    return CompactTokenizer(WORDS, context_length=24)


def _micro_shared(tokenizer, seed=0):
    config = {
        "embed_dim": 16,
        "width": 32,
        "layers": 1,
        "heads": 2,
        "vision_cfg": {"image_size": 16, "patch_size": 8},
        "text_cfg": {"context_length": 24, "vocab_size": tokenizer.vocab_size},
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_shared_clip(config)


def test_shared_clip_mirrors_open_clip_names(tokenizer):
    model = _micro_shared(tokenizer)
    assert model.visual.transformer is model.transformer
    assert model.visual.proj is model.text_projection is model.projection
    for name in ("conv1", "class_embedding", "positional_embedding", "ln_pre", "ln_post"):
        assert hasattr(model.visual, name)
    for name in ("token_embedding", "positional_embedding", "attn_mask", "ln_final", "logit_scale"):
        assert hasattr(model, name)
    keys = list(model.state_dict())
    assert len(keys) == len(set(keys)) and not any(k.startswith("visual.transformer") for k in keys)
    tokens = tokenizer(["a red circle.", "a blue star on dots."])
    image, text, scale = model(torch.zeros(2, 3, 16, 16), tokens)
    assert image.shape == text.shape == (2, 16)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    assert float(scale.detach()) == pytest.approx(1 / 0.07, rel=1e-5)


def test_shared_clip_copies_keep_the_sharing(tokenizer):
    import copy
    import pickle

    model = _micro_shared(tokenizer)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert other.visual.transformer is other.transformer
        assert other.visual.proj is other.projection
        assert other.transformer is not model.transformer


def test_shared_clip_rejects_unknown_config_keys(tokenizer):
    with pytest.raises(ValueError, match="Unknown SharedCLIP config keys"):
        build_shared_clip({"embed_dim": 8, "widht": 4})


def test_imsep_gradients_reach_shared_and_modality_specific_parameters(tokenizer):
    model = _micro_shared(tokenizer)
    scenes = make_scenes(8, image_size=16, random_state=0, as_frame=False)
    image, text, scale = model(images_to_tensor(scenes.images), tokenizer(scenes.captions))
    loss = imsep_loss(image, text, scale, caption_distance(scenes.captions))
    loss.backward()
    for name in (
        "transformer.resblocks.0.attn.in_proj_weight",  # shared
        "projection",  # shared
        "visual.conv1.weight",
        "visual.class_embedding",
        "visual.positional_embedding",
        "visual.ln_post.weight",
        "token_embedding.weight",
        "positional_embedding",
        "ln_final.weight",
        "logit_scale",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_shared_clip_round_trips_through_safetensors(tmp_path, tokenizer):
    from skvlm.models._loading import _load_state_dict
    from skvlm.training import save_tiny

    model = _micro_shared(tokenizer, seed=1)
    path = save_tiny(model, tokenizer, tmp_path / "m.safetensors")
    other = _micro_shared(tokenizer, seed=2)
    other.load_state_dict(_load_state_dict(path))
    tokens = tokenizer(["a red circle."])
    torch.testing.assert_close(other.encode_text(tokens), model.encode_text(tokens))


# ------------------------------------------------------------------------------ trainer


def _scene_source(step, rng):
    scenes = make_scenes(8, image_size=16, random_state=rng, as_frame=False)
    return scenes.images, scenes.captions


def _trainer(tokenizer, loss="imsep", seed=0, **kwargs):
    return ContrastiveTrainer(
        _micro_shared(tokenizer),
        tokenizer=tokenizer,
        loss=loss,
        n_steps=6,
        batch_size=8,
        learning_rate=1e-2,
        warmup_steps=2,
        device="cpu",
        random_state=seed,
        **kwargs,
    )


def test_init_only_stores_the_parameters(tokenizer):
    model = _micro_shared(tokenizer)
    trainer = ContrastiveTrainer(
        model, tokenizer=tokenizer, loss="triplet", device="cuda:7", n_steps=-1
    )
    assert trainer.loss == "triplet" and trainer.device == "cuda:7" and trainer.n_steps == -1
    assert not hasattr(trainer, "optimizer_") and not hasattr(trainer, "step_")


def _parameters(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_parameters(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_training_is_deterministic_for_a_seed(tokenizer):
    first = _trainer(tokenizer).fit(batch_source=_scene_source, n_steps=3)
    second = _trainer(tokenizer).fit(batch_source=_scene_source, n_steps=3)
    assert first.loss_curve_ == second.loss_curve_
    _assert_same_parameters(_parameters(first.model), _parameters(second.model))
    other_seed = _trainer(tokenizer, seed=1).fit(batch_source=_scene_source, n_steps=3)
    assert other_seed.loss_curve_ != first.loss_curve_


def test_resume_from_checkpoint_continues_identically(tmp_path, tokenizer):
    scenes = make_scenes(32, image_size=16, random_state=5, as_frame=False)
    straight = _trainer(tokenizer).fit(scenes.images, scenes.captions)
    checkpoint = tmp_path / "run.pt"
    interrupted = _trainer(tokenizer, checkpoint_path=checkpoint)
    interrupted.fit(scenes.images, scenes.captions, n_steps=3)
    assert checkpoint.is_file()
    resumed = _trainer(tokenizer, checkpoint_path=checkpoint).load_checkpoint()
    assert resumed.step_ == 3
    resumed.fit(scenes.images, scenes.captions)
    assert resumed.step_ == 6
    assert resumed.loss_curve_ == straight.loss_curve_
    _assert_same_parameters(_parameters(resumed.model), _parameters(straight.model))


def test_resume_refuses_a_different_run(tmp_path, tokenizer):
    path = _trainer(tokenizer).save_checkpoint(tmp_path / "a.pt")
    with pytest.raises(ValueError, match="random_state"):
        _trainer(tokenizer, seed=3).load_checkpoint(path)


def test_temperature_is_clamped(tokenizer):
    trainer = _trainer(tokenizer, loss="clip")
    with torch.no_grad():
        trainer.model.logit_scale.fill_(10.0)
    trainer.fit(batch_source=_scene_source, n_steps=1)
    assert float(trainer.model.logit_scale.detach()) <= math.log(100) + 1e-6


def test_siglip_training_adds_a_bias(tokenizer):
    trainer = _trainer(tokenizer, loss="siglip").fit(batch_source=_scene_source, n_steps=2)
    assert trainer.logit_bias_ is not None and float(trainer.logit_bias_.detach()) != -10.0
    assert all(np.isfinite(trainer.loss_curve_))


def test_weight_decay_only_on_matrices(tokenizer):
    trainer = _trainer(tokenizer).fit(batch_source=_scene_source, n_steps=1)
    decayed = {
        id(p) for g in trainer.optimizer_.param_groups if g["weight_decay"] > 0 for p in g["params"]
    }
    names = {name for name, p in trainer.model.named_parameters() if id(p) in decayed}
    assert "projection" in names and "visual.conv1.weight" in names
    assert (
        not {"logit_scale", "visual.class_embedding", "positional_embedding", "ln_final.weight"}
        & names
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [({"loss": "triplet"}, "loss must be"), ({"seed": None}, "random_state")],
)
def test_trainer_rejects_bad_arguments(tokenizer, kwargs, match):
    trainer = _trainer(tokenizer, **kwargs)  # __init__ only stores (the estimator contract)
    with pytest.raises(ValueError, match=match):
        trainer.fit(batch_source=_scene_source, n_steps=1)


def test_fit_rejects_mismatched_pairs(tokenizer):
    with pytest.raises(ValueError, match="differ in length"):
        _trainer(tokenizer).fit(np.zeros((3, 16, 16, 3), np.uint8), ["a", "b"])


# ------------------------------------------------------------------ tiny models, loader


def test_images_to_tensor_matches_the_eval_transform():
    from open_clip.transform import image_transform
    from PIL import Image

    images = make_scenes(3, random_state=0).images
    preprocess = image_transform(32, is_train=False)
    expected = torch.stack([preprocess(Image.fromarray(image)) for image in images])
    torch.testing.assert_close(images_to_tensor(images), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "name", ["skvlm-tiny", "skvlm-tiny-shared", "skvlm-tiny-slip", "skvlm-tiny-align"]
)
def test_saved_tiny_model_loads_through_load_model(tmp_path, name):
    from skvlm.models import load_model
    from skvlm.training import build_tiny, save_tiny

    model, tokenizer = build_tiny(name, seed=3)
    path = save_tiny(model, tokenizer, tmp_path / f"{name}.safetensors")
    loaded = load_model(name, pretrained=str(path), device="cpu", precision="fp32")
    tokens = tokenizer(["a photo of a red circle."])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.model.encode_text(tokens), model.eval().encode_text(tokens)
        )


def test_train_tiny_command_runs(tmp_path):
    from skvlm.training._cli import main

    out = tmp_path / "tiny.safetensors"
    status = main(
        [
            "--name",
            "skvlm-tiny",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--eval-samples",
            "50",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert status == 0 and out.is_file()


# --------------------------------------------------------------------- the tiny zoo

ZOO = ["skvlm-tiny", "skvlm-tiny-slip", "skvlm-tiny-shared", "skvlm-tiny-align", "skvlm-tiny-ssl"]


def test_recipes_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; from skvlm.training import RECIPES; from skvlm.training._cli import "
        "add_train_tiny_parser; assert 'torch' not in sys.modules, 'torch imported'; "
        "print(sorted(RECIPES))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted(ZOO))


def test_the_zoo_shares_data_steps_and_budget():
    from skvlm.training import COMMON, RECIPES

    assert sorted(RECIPES) == sorted(ZOO)
    for name, recipe in RECIPES.items():
        common = dict(COMMON)
        if name == "skvlm-tiny-ssl":
            # SimCLR reads no caption, and world 3's images are world 2's pixel for pixel.
            from skvlm.datasets import make_scenes

            two, three = (make_scenes(16, random_state=1, version=v) for v in (2, 3))
            np.testing.assert_array_equal(two.images, three.images)
            common["world"] = 2
        assert {k: recipe[k] for k in COMMON} == common, name
    assert RECIPES["skvlm-tiny-align"]["loss"] == "imsep"
    assert (
        RECIPES["skvlm-tiny-slip"]["ssl_weight"] > 0
        and RECIPES["skvlm-tiny-ssl"]["loss"] == "simclr"
    )


def test_nt_xent_loss_pinned():
    from skvlm.training import nt_xent_loss

    eye = torch.eye(2)
    # Each view: logit 1 to its positive, 0 to the two others -> -log(e / (e + 2)).
    assert float(nt_xent_loss(eye, eye, temperature=1.0)) == pytest.approx(
        -math.log(E / (E + 2)), abs=1e-6
    )
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Temperature 0.5 doubles the logits.
    assert float(nt_xent_loss(z, z, 0.5)) == pytest.approx(-math.log(E**2 / (E**2 + 2)), abs=1e-6)


def test_align_has_one_final_layer_norm():
    from skvlm.training import build_tiny

    align, _ = build_tiny("skvlm-tiny-align")
    shared, _ = build_tiny("skvlm-tiny-shared")
    assert align.visual.ln_post is align.ln_final
    assert not any(k.startswith("visual.ln_post") for k in align.state_dict())
    assert any(k.startswith("visual.ln_post") for k in shared.state_dict())
    with torch.no_grad():
        align.ln_final.bias.fill_(0.3)  # moves both modalities
        image = align.encode_image(torch.zeros(1, 3, 32, 32))
        align.ln_final.bias.fill_(0.0)
        assert not torch.allclose(image, align.encode_image(torch.zeros(1, 3, 32, 32)))


def _few_steps(name, seed=0, stop=None, checkpoint=None):
    from skvlm.training._tiny import _scene_batches, make_trainer

    trainer, recipe = make_trainer(
        name,
        seed=seed,
        checkpoint=checkpoint,
        device="cpu",
        verbose=0,
        n_steps=4,
        batch_size=6,
        warmup_steps=1,
    )
    if checkpoint is not None and checkpoint.is_file():
        trainer.load_checkpoint(checkpoint)
    return trainer.fit(batch_source=_scene_batches(6, recipe["world"]), n_steps=stop)


@pytest.mark.parametrize("name", ["skvlm-tiny-slip", "skvlm-tiny-align", "skvlm-tiny-ssl"])
def test_recipes_are_reproducible_and_resume_identically(tmp_path, name):
    straight = _few_steps(name)
    again = _few_steps(name)
    assert straight.loss_curve_ == again.loss_curve_ and len(straight.loss_curve_) == 4
    _assert_same_parameters(_parameters(straight.model), _parameters(again.model))
    checkpoint = tmp_path / "run.pt"
    _few_steps(name, stop=2, checkpoint=checkpoint)  # "killed" after 2 steps
    resumed = _few_steps(name, checkpoint=checkpoint)
    assert resumed.loss_curve_ == straight.loss_curve_
    _assert_same_parameters(_parameters(resumed.model), _parameters(straight.model))
    assert _few_steps(name, seed=1).loss_curve_ != straight.loss_curve_


def test_ssl_model_is_served_by_image_encoder_only(tmp_path):
    from skvlm import CLIPEncoder, ImageEncoder
    from skvlm.models import ModelNotFound
    from skvlm.training import build_tiny, save_tiny

    model, tokenizer = build_tiny("skvlm-tiny-ssl", seed=2)
    assert tokenizer is None
    path = save_tiny(model, None, tmp_path / "ssl.safetensors")
    images = make_scenes(3, random_state=0, version=2).images
    emb = ImageEncoder(
        model="skvlm-tiny-ssl", pretrained=str(path), device="cpu", precision="fp32"
    ).transform(images)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.eval()(images_to_tensor(images)), dim=-1)
    np.testing.assert_allclose(emb, expected.numpy(), atol=1e-5)
    with pytest.raises(ModelNotFound, match="ImageEncoder"):
        CLIPEncoder(model="skvlm-tiny-ssl", device="cpu").transform(["a circle"])


def _shipped_world(path):
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        training = json.loads((handle.metadata() or {}).get("skvlm_training", "{}"))
    return training.get("recipe", {}).get("world", 1)


def _shipped_metrics(name):
    from skvlm.models import load_model
    from skvlm.models._registry import shipped_weights
    from skvlm.training import evaluate_scenes

    path = shipped_weights(name)
    if path is None:
        pytest.skip(f"{name} weights not shipped yet")
    world = _shipped_world(path)
    if world == 1:
        pytest.skip(f"{name}: a first-world file")
    loaded = load_model(name, device="cpu", precision="fp32")
    # The held-out scenes and size of the figures in skvlm/models/weights/README.md.
    return evaluate_scenes(loaded.model, loaded.tokenizer, n_samples=3000, version=world)


_TEXT_MODELS = ["skvlm-tiny", "skvlm-tiny-slip", "skvlm-tiny-shared", "skvlm-tiny-align"]


@pytest.mark.parametrize("name", _TEXT_MODELS)
def test_shipped_model_quality(name):
    # Issue 14: retrieval far above chance for every text model; background below
    # saturation for the demo's study model (its headroom bound; skvlm-tiny-slip, whose
    # image-image term learns backgrounds well, reads 0.956 and is not held to it).
    metrics = _shipped_metrics(name)
    assert metrics["image_to_text_R@1"] >= 10 * metrics["chance_R@1"]
    assert metrics["zero_shot_colour"] >= 2 * metrics["chance_colour"]
    if name == "skvlm-tiny":
        assert metrics["zero_shot_background"] < 0.95


@pytest.mark.parametrize("name", _TEXT_MODELS)
def test_shipped_model_reads_shape_at_twice_chance(name):
    metrics = _shipped_metrics(name)
    assert metrics["zero_shot_shape"] >= 2 * metrics["chance_shape"]


def test_shipped_ssl_model_embeds_scenes_by_their_factors():
    from skvlm.models import load_model
    from skvlm.models._registry import shipped_weights
    from skvlm.training import evaluate_scenes

    if shipped_weights("skvlm-tiny-ssl") is None:
        pytest.skip("skvlm-tiny-ssl weights not shipped yet")
    model = load_model("skvlm-tiny-ssl", device="cpu", precision="fp32", kind="timm").model
    metrics = evaluate_scenes(model, None, n_samples=1000, version=2)
    assert metrics["nearest_neighbour_colour"] >= 5 / 12  # chance is 1/12
