"""Contrastive training: CLIP, SigLIP and AlignCLIP losses, a trainer, the tiny models."""

from ._losses import clip_loss, imsep_loss, siglip_loss
from ._semantic import STOP_WORDS, SentenceEncoderDistance, caption_distance
from ._tiny import RECIPES, build_tiny, evaluate_scenes, save_tiny, train_tiny
from ._trainer import ContrastiveTrainer, cosine_schedule, images_to_tensor

__all__ = [
    "RECIPES",
    "STOP_WORDS",
    "ContrastiveTrainer",
    "SentenceEncoderDistance",
    "build_tiny",
    "caption_distance",
    "clip_loss",
    "cosine_schedule",
    "evaluate_scenes",
    "images_to_tensor",
    "imsep_loss",
    "save_tiny",
    "siglip_loss",
    "train_tiny",
]
