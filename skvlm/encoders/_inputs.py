"""What encoders accept: containers of items, their modality, how errors name them,
and the bytes that identify an image's content."""

import os
from collections.abc import Mapping, Set
from pathlib import Path

import numpy as np

from .._images import UnreadableImageError, pil_identity, require_file


class UnreadableImageWarning(UserWarning):
    """``on_error="skip"`` dropped images that could not be read (each is named)."""


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _as_items(X):
    """Turn the accepted containers into a list of items, with clear errors."""
    if isinstance(X, (str, bytes, Path)):
        raise ValueError(
            f"X must be a sequence of images or texts, got a single {type(X).__name__}; "
            "wrap it in a list: encoder.transform([item])."
        )
    if isinstance(X, (Mapping, Set)):
        # list() of these gives keys or an arbitrary order: rows would not line up
        # with anything the caller holds.
        raise ValueError(
            f"X must be an ordered sequence of images or texts, got a {type(X).__name__}; "
            "pass a list (e.g. list(d.values()) or sorted(s))."
        )
    if hasattr(X, "iloc"):  # pandas Series / one-column DataFrame
        values = X.to_numpy()
        X = values.ravel() if values.ndim == 2 and values.shape[1] == 1 else values
    if isinstance(X, np.ndarray):
        if X.ndim == 4:
            return list(X)
        if X.ndim == 2 and X.dtype.kind in "fc":
            raise ValueError(
                f"X is a 2-D float array of shape {X.shape}: it looks like embeddings. "
                "Encoders take images (paths, PIL images, HxWxC uint8 arrays) or texts."
            )
        if X.ndim == 2 and X.shape[1] == 1:
            return list(X.ravel())
        if X.ndim != 1:
            raise ValueError(
                f"An array X must be (n, H, W, C) images or 1-D items, got shape {X.shape}; "
                "pass a single image as a list: [image]."
            )
        return list(X)
    try:
        return list(X)
    except TypeError:
        raise ValueError(
            f"X must be a sequence of images or texts, got {type(X).__name__}."
        ) from None


def _item_kind(item, modality):
    """'image' or 'text' for one item, given the requested modality."""
    from PIL import Image

    if isinstance(item, Image.Image) or isinstance(item, Path):
        return "image"
    if isinstance(item, np.ndarray):
        return "image"
    if isinstance(item, str):
        if modality == "text":
            return "text"
        if modality == "image":
            return "image"
        if os.path.isfile(item):
            return "image"
        if item.lower().endswith(_IMAGE_SUFFIXES) and "\n" not in item:
            return "image"  # a missing image file: reported (or skipped) when it is read
        if _looks_like_path(item):
            return "image"  # "photos/cat_001" names a file, even one without a suffix
        return "text"
    raise ValueError(
        f"Cannot encode an item of type {type(item).__name__}: expected an image path, "
        "a PIL image, an HxWxC uint8 array or a string."
    )


def _looks_like_path(text):
    """A path separator and no whitespace: what file names look like and captions do not."""
    return ("/" in text or os.sep in text) and not any(ch.isspace() for ch in text)


def _missing_path_error(items):
    """The error for the first suffix-less string of ``items`` taken for a file that is not there.

    Strings with an image suffix are reported when they are read, in order.
    """
    for index, item in enumerate(items):
        if (
            isinstance(item, str)
            and not item.lower().endswith(_IMAGE_SUFFIXES)
            and not os.path.lexists(item)
        ):
            return FileNotFoundError(
                f"Image file not found: {item!r} (item {index}). Under modality='auto' a "
                "string with a path separator and no spaces is read as an image file; "
                "pass modality='text' if it is meant as text."
            )
    return None


def _split_modality(items, modality):
    kinds = [_item_kind(item, modality) for item in items]
    if "image" in kinds and "text" in kinds:
        images = [i for i, k in enumerate(kinds) if k == "image"][:3]
        texts = [i for i, k in enumerate(kinds) if k == "text"][:3]
        raise ValueError(
            f"X mixes images (e.g. items {images}) and texts (e.g. items {texts}) under "
            "modality='auto'; encode them in separate calls or set modality explicitly."
        )
    return kinds[0]


def _describe(item, index):
    """How messages name an item: its path, or its position for in-memory images."""
    if isinstance(item, (str, os.PathLike)):
        return repr(os.fspath(item))
    return f"item {index}"


_FILE_PREFIX = b"file:"


def _image_bytes(item, index):
    """The bytes that identify an image's content: a file's bytes, an array's pixels and
    shape, or the RGB pixels a PIL image converts to (its palette, transparency and EXIF
    orientation all change what the model sees)."""
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        require_file(path)
        try:
            with open(path, "rb") as handle:
                return _FILE_PREFIX + handle.read()
        except OSError as exc:  # e.g. no permission: the same error as without a cache
            raise UnreadableImageError(
                f"Cannot read image {path!r}: {exc.strerror or exc}."
            ) from None
    if isinstance(item, Image.Image):
        return b"pil-rgb:" + pil_identity(item, f"item {index}")
    array = np.ascontiguousarray(item)
    return f"array:{array.dtype}:{array.shape}:".encode() + array.tobytes()
