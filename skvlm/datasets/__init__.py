"""Datasets: generated captioned scenes and loaders for real image data."""

from ._loaders import load_captioned_pairs, load_coop_split, load_image_folder
from ._scenes import FACTOR_NAMES, caption_vocabulary, make_scenes

__all__ = [
    "FACTOR_NAMES",
    "caption_vocabulary",
    "load_captioned_pairs",
    "load_coop_split",
    "load_image_folder",
    "make_scenes",
]
