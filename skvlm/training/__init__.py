"""Contrastive training: CLIP, SigLIP, AlignCLIP and SimCLR losses, a trainer, the tiny zoo.

Names are imported on first use, so ``skvlm.training.RECIPES`` (and the
``train-tiny`` command's options) need no torch; the trainer and losses do.
"""

import importlib

_NAMES = {
    "COMMON": "_recipes",
    "RECIPES": "_recipes",
    "STOP_WORDS": "_semantic",
    "ContrastiveTrainer": "_trainer",
    "SentenceEncoderDistance": "_semantic",
    "build_tiny": "_tiny",
    "caption_distance": "_semantic",
    "clip_loss": "_losses",
    "cosine_schedule": "_trainer",
    "evaluate_checkpoint": "_tiny",
    "evaluate_scenes": "_tiny",
    "images_to_tensor": "_trainer",
    "imsep_loss": "_losses",
    "nt_xent_loss": "_ssl",
    "save_tiny": "_tiny",
    "siglip_loss": "_losses",
    "train_tiny": "_tiny",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
