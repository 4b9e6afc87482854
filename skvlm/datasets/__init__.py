"""Datasets: generated captioned scenes and loaders for real image data."""

from ._loaders import load_captioned_pairs, load_coop_split, load_image_folder
from ._scenes import FACTOR_NAMES, caption_vocabulary, make_scenes
from ._world import (
    attribute_distance,
    caption_attributes,
    factor_names,
    zero_shot_accuracy,
    zero_shot_class_names,
    zero_shot_templates,
)

__all__ = [
    "FACTOR_NAMES",
    "attribute_distance",
    "caption_attributes",
    "caption_vocabulary",
    "factor_names",
    "load_captioned_pairs",
    "load_coop_split",
    "load_image_folder",
    "make_scenes",
    "zero_shot_accuracy",
    "zero_shot_class_names",
    "zero_shot_templates",
]
