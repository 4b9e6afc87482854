"""Encoders: images and text in, L2-normalised float32 embeddings out.

``CLIPEncoder`` wraps any open_clip model (and skvlm's own tiny models);
``ImageEncoder`` wraps a timm image backbone (DINOv2 and friends). Both are
stateless transformers (``requires_fit=False``): the model loads lazily from the
process-wide cache in :mod:`skvlm.models`, and the weights never enter a pickle.
"""

from .._embedding_cache import CacheCorruptionWarning, CacheWriteWarning, cache_info, clear_cache
from .._images import UnreadableImageError
from ._clip import CLIPEncoder
from ._decoding import _resized_side
from ._image import ImageEncoder
from ._inputs import UnreadableImageWarning
from ._keys import _library_versions

__all__ = [
    "CLIPEncoder",
    "CacheCorruptionWarning",
    "CacheWriteWarning",
    "ImageEncoder",
    "UnreadableImageError",
    "UnreadableImageWarning",
    "_library_versions",
    "_resized_side",
    "cache_info",
    "clear_cache",
]
