"""Datasets: generated captioned scenes and loaders for real image data."""

from ._scenes import FACTOR_NAMES, caption_vocabulary, make_scenes

__all__ = ["FACTOR_NAMES", "caption_vocabulary", "make_scenes"]

try:  # written by another engineer; optional until it lands
    from ._loaders import (  # noqa: F401
        load_captioned_pairs,
        load_coop_split,
        load_image_folder,
    )

    __all__ += ["load_captioned_pairs", "load_coop_split", "load_image_folder"]
except ImportError:  # pragma: no cover
    pass
