"""Train, evaluate and save the tiny model zoo on generated scenes.

The recipes are in :mod:`skvlm.training._recipes` (importable without torch):
``skvlm-tiny`` (CLIP), ``skvlm-tiny-slip`` (CLIP + SimCLR), ``skvlm-tiny-shared``
(SharedCLIP + CLIP loss), ``skvlm-tiny-align`` (SharedCLIP with one final LayerNorm
+ AlignCLIP's IMSep) and ``skvlm-tiny-ssl`` (an image-only SimCLR encoder). All see
fresh :func:`~skvlm.datasets.make_scenes` pairs of the same world at every step
(batch ``s`` seeded by ``(seed, s)``), for a fixed number of steps, so
``python -m skvlm train-tiny --name NAME`` reproduces a shipped file.
"""

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..datasets import make_scenes, zero_shot_accuracy
from ._recipes import EVAL_RANDOM_STATE, IMAGE_ONLY, RECIPES, check_recipe_name
from ._trainer import ContrastiveTrainer, images_to_tensor

# The recipe keys that are ContrastiveTrainer parameters.
_TRAINER_KEYS = (
    "loss",
    "n_steps",
    "batch_size",
    "learning_rate",
    "warmup_steps",
    "alpha",
    "beta",
    "semantic_distance",
    "ssl_weight",
)


def _build_image_only(name):
    import open_clip.model

    from ..models._registry import image_config

    config = image_config(name)
    return open_clip.model._build_vision_tower(config["embed_dim"], config["vision_cfg"])


def build_tiny(name, seed=0):
    """A freshly initialised tiny model and its tokenizer (init seeded by ``seed``).

    The image-only models (``skvlm-tiny-ssl``) are an open_clip ``VisionTransformer``
    and have no tokenizer (None).
    """
    from ..models._registry import (
        _register_open_clip_configs,
        is_shared_architecture,
        open_clip_config,
        shared_config,
        vocab_words,
    )
    from ..models._tokenizer import CompactTokenizer

    check_recipe_name(name)
    if name in IMAGE_ONLY:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _build_image_only(name), None
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
    encode = getattr(model, "encode_image", model)
    rows = [
        torch.nn.functional.normalize(
            encode(images_to_tensor(images[start : start + batch_size]).to(device)), dim=-1
        )
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


def _same_class_margin(embeddings, codes):
    """Mean cosine to same-class minus different-class images (a label-free-model score)."""
    similarity = embeddings @ embeddings.T
    same = codes[:, None] == codes[None, :]
    np.fill_diagonal(same, False)
    other = codes[:, None] != codes[None, :]
    return float(similarity[same].mean() - similarity[other].mean())


def evaluate_scenes(
    model, tokenizer, n_samples=3000, random_state=EVAL_RANDOM_STATE, device="cpu", version=3
):
    """Held-out quality of a tiny model: zero-shot per labelling, retrieval, geometry.

    Returns a dict: ``zero_shot_<factor>`` and ``chance_<factor>`` from
    :func:`~skvlm.datasets.zero_shot_accuracy` (the world's prompt templates),
    ``image_to_text_R@1`` / ``text_to_image_R@1`` (the matched caption among all
    ``n_samples``; chance is 1 / n_samples), ``alignment`` (mean matched cosine),
    ``modality_gap`` (distance between the modality centroids) and
    ``logit_scale``. An image-only model (``tokenizer=None``) gets
    ``nearest_neighbour_<factor>`` (leave-one-out 1-NN accuracy) and
    ``same_class_margin_<factor>`` for every labelling instead.
    """
    scenes = make_scenes(n_samples, random_state=random_state, as_frame=False, version=version)
    image_emb = _encode_images(model, scenes.images, device)
    metrics = {"n_eval": n_samples, "world": version}
    if tokenizer is None:
        similarity = image_emb @ image_emb.T
        np.fill_diagonal(similarity, -np.inf)
        nearest = similarity.argmax(axis=1)
        for factor, codes in scenes.codes.items():
            metrics[f"nearest_neighbour_{factor}"] = float(np.mean(codes[nearest] == codes))
            metrics[f"same_class_margin_{factor}"] = _same_class_margin(image_emb, codes)
        return metrics
    text_emb = _encode_texts(model, tokenizer, scenes.captions, device)
    scores = zero_shot_accuracy(
        image_emb, lambda texts: _encode_texts(model, tokenizer, texts, device), scenes
    )
    metrics.update(
        {(k if k.startswith("chance") else f"zero_shot_{k}"): v for k, v in scores.items()}
    )
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
    An image-only model (``tokenizer=None``) stores no vocabulary.
    """
    from safetensors.torch import save_file

    state = {
        key: value.detach()
        .to("cpu", dtype if value.is_floating_point() else value.dtype)
        .contiguous()
        for key, value in model.state_dict().items()
    }
    meta = {}
    if tokenizer is not None:
        meta["skvlm_vocab"] = "\n".join(tokenizer.words)
        meta["skvlm_hash_buckets"] = str(tokenizer.hash_buckets)
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def _scene_batches(batch_size, version):
    def sample(step, rng):
        scenes = make_scenes(batch_size, random_state=rng, as_frame=False, version=version)
        return scenes.images, scenes.captions

    return sample


def make_trainer(
    name, seed=0, checkpoint=None, checkpoint_every=250, device="auto", verbose=1, **overrides
):
    """The freshly initialised model, its tokenizer and its recipe's trainer."""
    recipe = {
        **RECIPES[check_recipe_name(name)],
        **{k: v for k, v in overrides.items() if v is not None},
    }
    model, tokenizer = build_tiny(name, seed=seed)
    trainer = ContrastiveTrainer(
        model,
        tokenizer=tokenizer,
        device=device,
        random_state=seed,
        checkpoint_path=checkpoint,
        checkpoint_every=checkpoint_every if checkpoint else None,
        verbose=verbose,
        **{k: recipe[k] for k in _TRAINER_KEYS if k in recipe},
    )
    return trainer, recipe


def evaluate_checkpoint(name, checkpoint, n_samples=3000, seed=0, device="cpu"):
    """:func:`evaluate_scenes` of a model restored from a trainer checkpoint (mid-run)."""
    trainer, recipe = make_trainer(name, seed=seed, device=device, verbose=0)
    trainer.load_checkpoint(checkpoint)
    metrics = evaluate_scenes(
        trainer.model, trainer.tokenizer, n_samples, device=trainer.device_, version=recipe["world"]
    )
    return {"step": trainer.step_, **metrics}


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
    eval_samples=3000,
    verbose=1,
):
    """Train a tiny model of the zoo on fresh make_scenes batches and save it.

    Parameters
    ----------
    name : str
        A key of ``RECIPES``: skvlm-tiny, skvlm-tiny-slip, skvlm-tiny-shared,
        skvlm-tiny-align, skvlm-tiny-ssl.
    out : path or None
        The safetensors file; None is the file the package ships
        (``skvlm/models/weights/<name>.safetensors``).
    n_steps, batch_size, learning_rate : optional
        Override the recipe in ``RECIPES[name]``.
    seed : int, default=0
        Seeds the initialisation and the batches.
    checkpoint : path or None
        Trainer checkpoint, written every ``checkpoint_every`` steps; with
        ``resume`` an existing one is continued (identically: a run killed and
        resumed gives the weights of an uninterrupted run).
    device : str, default="auto"
    fp16 : bool, default=False
        Store the weights in float16 (half the file size).
    eval_samples : int, default=3000
        Held-out scenes for the quality numbers (0 skips the evaluation).
    verbose : int, default=1

    Returns
    -------
    dict with the recipe, the wall and CPU time of this call's training steps, the output
    path and its size, and the metrics of :func:`evaluate_scenes`.
    """
    trainer, recipe = make_trainer(
        name,
        seed=seed,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        device=device,
        verbose=verbose,
        n_steps=n_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
    resumed_at = 0
    if resume and checkpoint and Path(checkpoint).is_file():
        trainer.load_checkpoint(checkpoint)
        resumed_at = trainer.step_
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.fit(batch_source=_scene_batches(recipe["batch_size"], recipe["world"]))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return _save_run(
        trainer,
        recipe,
        name,
        seed,
        out,
        eval_samples,
        fp16,
        {"wall_time_s": round(wall, 1), "cpu_time_s": round(cpu, 1), "resumed_at_step": resumed_at},
    )


def _save_run(trainer, recipe, name, seed, out, eval_samples, fp16, timing):
    """Evaluate a finished run, save its weights with the report as metadata, return it."""
    from ..models._registry import WEIGHTS_DIR

    model, tokenizer = trainer.model, trainer.tokenizer
    metrics = (
        evaluate_scenes(
            model, tokenizer, eval_samples, device=trainer.device_, version=recipe["world"]
        )
        if eval_samples
        else {}
    )
    report = {
        "name": name,
        "seed": seed,
        "recipe": recipe,
        "semantic_distance": _distance_name(trainer),
        **timing,
        "final_loss": trainer.loss_curve_[-1] if trainer.loss_curve_ else None,
        "metrics": metrics,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    path = Path(out) if out is not None else WEIGHTS_DIR / f"{name}.safetensors"
    save_tiny(
        model,
        tokenizer,
        path,
        metadata={
            "skvlm_training": {k: v for k, v in report.items() if k != "metrics"},
            "skvlm_quality": metrics,
        },
        dtype=torch.float16 if fp16 else torch.float32,
    )
    report["path"] = str(path)
    report["size_bytes"] = path.stat().st_size
    return report


def _distance_name(trainer):
    distance = getattr(trainer, "semantic_distance_", None)
    if distance is None:
        return None
    return getattr(distance, "__name__", None) or type(distance).__name__
