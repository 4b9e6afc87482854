"""Train, evaluate and save the shipped tiny models on generated scenes.

``skvlm-tiny`` is an open_clip CLIP trained with the CLIP loss; ``skvlm-tiny-shared``
a :class:`~skvlm.models.shared_clip.SharedCLIP` trained with AlignCLIP's IMSep
loss. Both see fresh :func:`~skvlm.datasets.make_scenes` pairs at every step
(batch ``s`` seeded by ``(seed, s)``), for a fixed number of steps, so
``python -m skvlm train-tiny --name NAME`` reproduces a shipped file.
"""

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..datasets import make_scenes
from ._trainer import ContrastiveTrainer, images_to_tensor

# The recipes of the shipped files. Learning rate and budget of skvlm-tiny follow
# shared/notes/tiny-clip-feasibility.md (w128/p8 vision, w64 text, lr 2e-3).
RECIPES = {
    "skvlm-tiny": {
        "loss": "clip",
        "n_steps": 4000,
        "batch_size": 256,
        "learning_rate": 2e-3,
        "warmup_steps": 200,
    },
    # Same batch, peak learning rate and warm-up as skvlm-tiny (AlignCLIP's alpha=1,
    # beta=0.5); half the steps, because a step costs ~2.4x more (the text also runs
    # through the width-128 shared transformer) on the 2-core CPU it was trained on.
    "skvlm-tiny-shared": {
        "loss": "imsep",
        "n_steps": 2000,
        "batch_size": 256,
        "learning_rate": 2e-3,
        "warmup_steps": 200,
    },
}

# Held-out evaluation: a seed no training batch uses (those are seeded by
# (seed, step) sequences, never by a bare integer).
EVAL_RANDOM_STATE = 20_251_123
ZERO_SHOT_TEMPLATES = {
    "shape": ["a photo of a {}.", "a {}."],
    "colour": ["a photo of a {} shape.", "a {} object."],
    "background": ["a shape on a {} background."],
}


def build_tiny(name, seed=0):
    """A freshly initialised tiny model and its tokenizer (init seeded by ``seed``)."""
    from ..models._registry import (
        _register_open_clip_configs,
        is_shared_architecture,
        open_clip_config,
        shared_config,
        vocab_words,
    )
    from ..models._tokenizer import CompactTokenizer

    if name not in RECIPES:
        raise ValueError(f"Unknown tiny model {name!r}; choose from {sorted(RECIPES)}.")
    words = vocab_words()
    shared = is_shared_architecture(name)
    config = shared_config(name) if shared else open_clip_config(name)
    tokenizer = CompactTokenizer(words, context_length=config["text_cfg"]["context_length"])
    text_cfg = {**config["text_cfg"], "vocab_size": tokenizer.vocab_size}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if shared:
            from ..models.shared_clip import build_shared_clip

            model = build_shared_clip({**config, "text_cfg": text_cfg})
        else:
            import open_clip

            _register_open_clip_configs()
            model = open_clip.create_model(name, pretrained=None, text_cfg=text_cfg)
    return model, tokenizer


@torch.no_grad()
def _encode_images(model, images, device, batch_size=500):
    model.eval()
    rows = [
        model.encode_image(images_to_tensor(images[start : start + batch_size]).to(device), normalize=True)
        for start in range(0, len(images), batch_size)
    ]
    return torch.cat(rows).float().cpu().numpy()


@torch.no_grad()
def _encode_texts(model, tokenizer, texts, device, batch_size=500):
    model.eval()
    texts = list(texts)
    rows = [
        model.encode_text(tokenizer(texts[start : start + batch_size]).to(device), normalize=True)
        for start in range(0, len(texts), batch_size)
    ]
    return torch.cat(rows).float().cpu().numpy()


def evaluate_scenes(model, tokenizer, n_samples=2000, random_state=EVAL_RANDOM_STATE, device="cpu"):
    """Zero-shot accuracy per factor and pair retrieval on held-out scenes.

    Returns a dict: ``zero_shot_<factor>`` (accuracy with the prompts of
    ``ZERO_SHOT_TEMPLATES``, class weights = normalised mean over templates),
    ``image_to_text_R@1`` / ``text_to_image_R@1`` (the matched caption among all
    ``n_samples``; chance is 1 / n_samples), ``alignment`` (mean matched cosine)
    and ``modality_gap`` (distance between the modality centroids).
    """
    from .._text import class_text_embeddings

    scenes = make_scenes(n_samples, random_state=random_state)
    image_emb = _encode_images(model, scenes.images, device)
    text_emb = _encode_texts(model, tokenizer, scenes.captions, device)

    def encode_text(texts):
        return _encode_texts(model, tokenizer, texts, device)

    metrics = {}
    for factor, templates in ZERO_SHOT_TEMPLATES.items():
        weights = class_text_embeddings(encode_text, scenes.factor_names[factor], templates)
        predicted = (image_emb @ weights.T).argmax(axis=1)
        metrics[f"zero_shot_{factor}"] = float(np.mean(predicted == scenes.codes[factor]))
    similarity = image_emb @ text_emb.T
    diagonal = np.arange(n_samples)
    metrics["image_to_text_R@1"] = float(np.mean(similarity.argmax(axis=1) == diagonal))
    metrics["text_to_image_R@1"] = float(np.mean(similarity.argmax(axis=0) == diagonal))
    metrics["chance_R@1"] = 1.0 / n_samples
    metrics["alignment"] = float(np.mean(np.sum(image_emb * text_emb, axis=1)))
    metrics["modality_gap"] = float(np.linalg.norm(image_emb.mean(0) - text_emb.mean(0)))
    metrics["logit_scale"] = float(model.logit_scale.detach().exp())
    return metrics


def save_tiny(model, tokenizer, path, metadata=None, dtype=torch.float32):
    """Save weights as safetensors, with the vocabulary in the file's metadata.

    The loader (:func:`skvlm.models.load_model`) rebuilds the compact tokenizer
    from ``skvlm_vocab``, so a shipped file keeps working if the word list changes.
    """
    from safetensors.torch import save_file

    state = {
        key: value.detach().to("cpu", dtype if value.is_floating_point() else value.dtype).contiguous()
        for key, value in model.state_dict().items()
    }
    meta = {"skvlm_vocab": "\n".join(tokenizer.words)}
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def _scene_batches(batch_size):
    def sample(step, rng):
        scenes = make_scenes(batch_size, random_state=rng, as_frame=False)
        return scenes.images, scenes.captions

    return sample


def train_tiny(
    name="skvlm-tiny",
    out=None,
    n_steps=None,
    batch_size=None,
    learning_rate=None,
    seed=0,
    checkpoint=None,
    checkpoint_every=250,
    resume=False,
    device="auto",
    fp16=False,
    eval_samples=2000,
    verbose=1,
):
    """Train a tiny model on fresh make_scenes batches and save it.

    Parameters
    ----------
    name : {"skvlm-tiny", "skvlm-tiny-shared"}
    out : path or None
        The safetensors file; None is the file the package ships
        (``skvlm/models/weights/<name>.safetensors``).
    n_steps, batch_size, learning_rate : optional
        Override the recipe in ``RECIPES[name]``.
    seed : int, default=0
        Seeds the initialisation and the batches.
    checkpoint : path or None
        Trainer checkpoint, written every ``checkpoint_every`` steps; with
        ``resume`` an existing one is continued (identically).
    device : str, default="auto"
    fp16 : bool, default=False
        Store the weights in float16 (half the file size).
    eval_samples : int, default=2000
        Held-out scenes for the quality numbers (0 skips the evaluation).
    verbose : int, default=1

    Returns
    -------
    dict with the recipe, the wall time, the output path and its size, and the
    metrics of :func:`evaluate_scenes`.
    """
    from ..models._registry import WEIGHTS_DIR

    recipe = dict(RECIPES[name]) if name in RECIPES else None
    if recipe is None:
        raise ValueError(f"Unknown tiny model {name!r}; choose from {sorted(RECIPES)}.")
    for key, value in (("n_steps", n_steps), ("batch_size", batch_size), ("learning_rate", learning_rate)):
        if value is not None:
            recipe[key] = value
    model, tokenizer = build_tiny(name, seed=seed)
    trainer = ContrastiveTrainer(
        model,
        tokenizer,
        device=device,
        random_state=seed,
        checkpoint_path=checkpoint,
        checkpoint_every=checkpoint_every if checkpoint else None,
        verbose=verbose,
        **recipe,
    )
    if resume and checkpoint and Path(checkpoint).is_file():
        trainer.load_checkpoint(checkpoint)
    start = time.perf_counter()
    trainer.fit(batch_source=_scene_batches(recipe["batch_size"]))
    wall = time.perf_counter() - start
    metrics = evaluate_scenes(model, tokenizer, eval_samples, device=trainer.device) if eval_samples else {}
    report = {
        "name": name,
        "seed": seed,
        "recipe": recipe,
        "wall_time_s": round(wall, 1),
        "final_loss": trainer.loss_curve_[-1] if trainer.loss_curve_ else None,
        "metrics": metrics,
        "torch": torch.__version__,
    }
    path = Path(out) if out is not None else WEIGHTS_DIR / f"{name}.safetensors"
    save_tiny(
        model,
        tokenizer,
        path,
        metadata={"skvlm_training": {k: v for k, v in report.items() if k != "metrics"},
                  "skvlm_quality": metrics},
        dtype=torch.float16 if fp16 else torch.float32,
    )
    report["path"] = str(path)
    report["size_bytes"] = path.stat().st_size
    return report
