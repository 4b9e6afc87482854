"""Cache keys: everything that shapes an embedding, hashed without loading the model."""

import functools

from .._embedding_cache import content_hash
from .._images import UnreadableImageError
from ._inputs import _image_bytes


@functools.cache  # package metadata is read once per process
def _library_versions(kind):
    """Versions of the libraries whose code shapes an embedding: decoding (Pillow),
    preprocessing and the forward pass (torch, torchvision, open_clip or timm), and
    skvlm's own image handling. A cache entry written under other versions misses.

    Normalisation is not part of a key: entries hold the raw model output, and
    ``normalize`` is applied after the cache.
    """
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    packages = ["torch", "torchvision", "pillow", "timm" if kind == "timm" else "open_clip_torch"]
    found = [f"skvlm={__version__}"]
    for package in packages:
        try:
            found.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            found.append(f"{package}=absent")
    return ";".join(found)


def spec_fingerprint(encoder, augment):
    """Identity of everything that shapes ``encoder``'s embeddings (model not loaded)."""
    from ..models import model_identity, resolve_device, resolve_precision

    precision = resolve_precision(encoder.precision, resolve_device(encoder.device))
    aug = f"aug{encoder.n_augmentations}-{encoder.random_state}" if augment else "noaug"
    # The registered config (towers, image size, preprocessing) too: the model name
    # alone would not change when a config is registered anew under it.
    architecture, weights = model_identity(encoder.model, encoder.pretrained, encoder._kind)
    return content_hash(
        encoder._kind,
        encoder.model,
        architecture,
        weights,
        precision,
        aug,
        _library_versions(encoder._kind),
    )


def item_keys(spec, items, kind, failures=None):
    """Content keys under ``spec``; with ``failures`` given, an unreadable file gets None."""
    if kind == "text":
        return [content_hash(spec, "text", item) for item in items]
    keys = []
    for index, item in enumerate(items):
        try:
            keys.append(content_hash(spec, "image", _image_bytes(item, index)))
        except (OSError, UnreadableImageError) as exc:
            if failures is None:
                raise
            failures[index] = str(exc)  # names the file, or the item's position
            keys.append(None)
    return keys
