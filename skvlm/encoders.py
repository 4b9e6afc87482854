"""Encoders: images and text in, L2-normalised float32 embeddings out.

``CLIPEncoder`` wraps any open_clip model (and skvlm's own tiny models);
``ImageEncoder`` wraps a timm image backbone (DINOv2 and friends). Both are
stateless transformers (``requires_fit=False``): the model loads lazily from the
process-wide cache in :mod:`skvlm.models`, and the weights never enter a pickle.
"""

import contextlib
import functools
import hashlib
import math
import os
import warnings
from collections.abc import Mapping, Set
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin

from ._embedding_cache import (
    CacheCorruptionWarning,
    CacheWriteWarning,
    _caller_stacklevel,
    cache_info,
    clear_cache,
    content_hash,
    resolve_cache,
)
from ._images import UnreadableImageError, load_rgb, pil_identity, require_file
from ._math import iter_batches, l2_normalize
from ._sklearn import HasMethods, Interval, StrOptions, _fit_context

class UnreadableImageWarning(UserWarning):
    """``on_error="skip"`` dropped images that could not be read (each is named)."""


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _file_identity(path):
    """Content hash of a file, read once per version of it (memoised on disk too)."""
    from .models._file_hash import file_content_hash

    return file_content_hash(path)


@functools.cache  # package metadata is read once per process
def _library_versions(kind):
    """Versions of the libraries whose code shapes an embedding: decoding (Pillow),
    preprocessing and the forward pass (torch, torchvision, open_clip or timm), and
    skvlm's own image handling. A cache entry written under other versions misses.

    Normalisation is not part of a key: entries hold the raw model output, and
    ``normalize`` is applied after the cache.
    """
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    packages = ["torch", "torchvision", "pillow", "timm" if kind == "timm" else "open_clip_torch"]
    found = [f"skvlm={__version__}"]
    for package in packages:
        try:
            found.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            found.append(f"{package}=absent")
    return ";".join(found)


# --------------------------------------------------------------------------- inputs


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
        if (isinstance(item, str) and not item.lower().endswith(_IMAGE_SUFFIXES)
                and not os.path.lexists(item)):
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


# --------------------------------------------------------------------------- augmentation


def _normalize_stats(preprocess):
    """(mean, std) of the Normalize step of a torchvision Compose."""
    for step in getattr(preprocess, "transforms", []):
        if type(step).__name__ == "Normalize":
            return tuple(step.mean), tuple(step.std)
    return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def _resized_side(preprocess):
    """The length a shortest-side ``Resize`` step scales images to, else None.

    Only that kind of resize can blow a thin strip up to gigapixels; a resize to a
    fixed (height, width), or one with ``max_size``, cannot.
    """
    for step in getattr(preprocess, "transforms", []):
        if type(step).__name__ == "Resize" and getattr(step, "max_size", None) is None:
            size = step.size
            if isinstance(size, Integral):
                return int(size)
            if isinstance(size, (list, tuple)) and len(size) == 1:
                return int(size[0])
            return None
    return None


def _augmented_view(image, image_size, mean, std, rng):
    """Random resized crop (scale 0.5-1, as Tip-Adapter) + horizontal flip, from ``rng``."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    width, height = image.size
    area = width * height
    for _ in range(10):
        target_area = area * rng.uniform(0.5, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(round(math.sqrt(target_area * ratio)))
        h = int(round(math.sqrt(target_area / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            break
    else:
        h, w, top, left = height, width, 0, 0
    view = F.resized_crop(image, top, left, h, w, list(image_size), InterpolationMode.BICUBIC)
    if rng.random() < 0.5:
        view = F.hflip(view)
    tensor = F.to_tensor(view)
    return F.normalize(tensor, mean, std).to(torch.float32)


# --------------------------------------------------------------------------- decoding


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _decode_workers(n_jobs, device):
    """Decoding threads for ``n_jobs`` (1 = decode in the calling thread, no pool).

    None keeps the model fed: up to 8 threads beside a GPU, up to 4 on the CPU (whose
    cores the model itself uses), never more than the cores; -1 is every core and
    -k all but k - 1, as in scikit-learn.
    """
    if n_jobs == 0:
        raise ValueError(
            "n_jobs=0 decodes with no thread at all; use 1 (the calling thread), "
            "k > 1 threads, -1 (every core) or None (enough to keep the model busy)."
        )
    cores = _available_cores()
    if n_jobs is None:
        return min(cores, 8 if device.type == "cuda" else 4)
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return n_jobs


class _ItemDecoder:
    """Decodes (and preprocesses) one image by position; safe to call from threads."""

    def __init__(self, items, loaded, preprocess, spec, keys):
        self.items, self.preprocess, self.spec, self.keys = items, preprocess, spec, keys
        self.side = _resized_side(loaded.preprocess)

    def __call__(self, index):
        """(index, (image or pixels, changed)) or (index, the error naming the item)."""
        item, content, changed = self.items[index], None, False
        try:
            if self.spec is not None and isinstance(item, (str, os.PathLike)):
                identity = _image_bytes(item, index)
                changed = content_hash(self.spec, "image", identity) != self.keys[index]
                content = identity[len(_FILE_PREFIX):]
            name = _describe(item, index)
            image = load_rgb(item, name=name, resized_side=self.side, content=content)
        except (OSError, UnreadableImageError) as exc:
            return index, exc
        return index, (image if self.preprocess is None else self.preprocess(image), changed)


def _decode_batches(decode, batches, n_workers):
    """Yield (chunk, [decode(i) for i in chunk]) in order, one batch decoded ahead.

    With more than one worker, a thread pool decodes batch i + 1 while the caller
    runs the model on batch i (Pillow releases the GIL while it decodes and resizes);
    the results are the serial ones, in the same order.
    """
    if n_workers <= 1:
        for chunk in batches:
            yield chunk, [decode(index) for index in chunk]
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="skvlm-decode")
    try:
        pending = None
        for chunk in batches:
            submitted = (chunk, [pool.submit(decode, index) for index in chunk])
            if pending is not None:
                yield pending[0], [future.result() for future in pending[1]]
            pending = submitted
        if pending is not None:
            yield pending[0], [future.result() for future in pending[1]]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- estimators


class _BaseEncoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared machinery: lazy model, batching, the embedding cache, pickling."""

    _kind = "clip"

    _parameter_constraints = {
        "model": [str],
        "pretrained": [str, os.PathLike, "boolean", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "precision": [StrOptions({"auto", "fp32", "fp16", "bf16"})],
        "normalize": ["boolean"],
        "cache": [str, os.PathLike, HasMethods(["cache"]), None],
        "n_augmentations": [Interval(Integral, 0, None, closed="left")],
        "n_jobs": [Integral, None],
        "on_error": [StrOptions({"raise", "skip"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    @property
    def _loaded(self):
        # Looked up on every use, not memoised on the instance: after set_params (or
        # an attribute assignment, or a checkpoint rewritten in place) a held handle
        # would run the old weights and file their embeddings under the new key.
        # The process-wide model cache makes the lookup cheap; clones still share.
        from .models import load_model

        return load_model(
            self.model, self.pretrained, self.device, self.precision, kind=self._kind
        )

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_loaded", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.non_deterministic = self.n_augmentations > 0 and self.random_state is None
        return tags

    @property
    def _n_features_out(self):
        return self._loaded.embed_dim

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """No-op (the model is pretrained); validates the parameters.

        Parameters
        ----------
        X, y : ignored

        Returns
        -------
        self
        """
        return self

    def transform(self, X, return_indices=False):
        """Encode images or texts into an (n_samples, embed_dim) float32 array.

        Parameters
        ----------
        X : sequence of images or texts
            Image paths, PIL images, HxWxC uint8 arrays or an (n, H, W, C) array; or
            strings (see ``modality``).
        return_indices : bool, default=False
            Also return the positions in ``X`` of the rows returned. With
            ``on_error="skip"`` unreadable images have no row, so this is how to keep
            labels aligned: ``Z, kept = encoder.transform(X, return_indices=True)``,
            then ``y[kept]``.

        Returns
        -------
        embeddings : ndarray of shape (n_kept, embed_dim), float32
            One row per readable item, in the order of ``X`` (all of them unless
            ``on_error="skip"`` dropped some).
        kept_indices : ndarray of shape (n_kept,), int
            Only with ``return_indices=True``.
        """
        self._validate_params()
        return self._encode_checked(X, augment=False, return_indices=return_indices)

    def fit_transform(self, X, y=None, return_indices=False):
        """Encode ``X``; with ``n_augmentations > 0``, average that many augmented views.

        Train-time augmentation (Tip-Adapter's and GDA's cache construction) happens
        here only: ``transform`` never augments, so in a ``Pipeline`` the support
        set is augmented and the queries are not.

        Parameters
        ----------
        X : sequence of images or texts
            As in :meth:`transform`.
        y : ignored
            Not used; with ``on_error="skip"`` index it yourself with the kept
            positions (``y[kept]``), as a ``Pipeline`` cannot.
        return_indices : bool, default=False
            Also return the positions in ``X`` of the rows returned.

        Returns
        -------
        embeddings : ndarray of shape (n_kept, embed_dim), float32
        kept_indices : ndarray of shape (n_kept,), int
            Only with ``return_indices=True``.
        """
        self._validate_params()
        return self._encode_checked(
            X, augment=self.n_augmentations > 0, return_indices=return_indices
        )

    def _encode_checked(self, X, augment, return_indices):
        items = _as_items(X)
        embeddings, kept = self._encode_items(items, augment=augment)
        if len(kept) < len(items):
            embeddings = self._keep_input_index(embeddings, X, kept)
        return (embeddings, kept) if return_indices else embeddings

    def _keep_input_index(self, embeddings, X, kept):
        """With pandas output and dropped rows, label each row by its input's index.

        That is the input's index label for a pandas input (scikit-learn's ``set_output``
        would otherwise reuse the full index for fewer rows and fail), and the position
        in ``X`` otherwise (it would number the rows 0..n_kept-1, hiding the gaps).
        """
        from ._sklearn import _get_output_config

        if _get_output_config("transform", self)["dense"] != "pandas":
            return embeddings
        import pandas as pd

        index = X.index[kept] if hasattr(X, "iloc") else kept
        return pd.DataFrame(embeddings, index=index, columns=self.get_feature_names_out())

    # ----------------------------------------------------------------- internals

    def _spec_fingerprint(self, augment):
        """Identity of everything that shapes an embedding, without loading the model."""
        from .models import resolve_device, resolve_precision
        from .models._registry import architecture_signature

        device = resolve_device(self.device)
        precision = resolve_precision(self.precision, device)
        weights = self._weights_identity()
        aug = f"aug{self.n_augmentations}-{self.random_state}" if augment else "noaug"
        # The registered config (towers, image size, preprocessing) too: the model name
        # alone would not change when a config is registered anew under it.
        return content_hash(
            self._kind, self.model, architecture_signature(self.model, self._kind), weights,
            precision, aug, _library_versions(self._kind),
        )

    def _weights_identity(self):
        pretrained = self.pretrained
        if self._kind == "clip":
            from .models import resolve_pretrained
            from .models._registry import check_model_name

            import warnings

            check_model_name(self.model)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pretrained = resolve_pretrained(self.model, pretrained)
        if pretrained is None or pretrained is False:
            import open_clip

            return f"random-init-seed0-open_clip{open_clip.__version__}"
        if isinstance(pretrained, (str, Path)) and os.path.isfile(str(pretrained)):
            return "file:" + _file_identity(str(pretrained))
        return f"tag:{pretrained}"

    def _encode_items(self, items, augment, modality=None):
        """(embeddings of the readable items, their positions in ``items``)."""
        if len(items) == 0:
            raise ValueError("X is empty: there is nothing to encode.")
        kind = self._modality_of(items, modality)
        skip = self.on_error == "skip" and kind == "image"
        cache = resolve_cache(self.cache)
        if augment and not isinstance(self.random_state, Integral):
            # Only an int seed makes the views reproducible from a key: every RandomState
            # has the same repr, so RandomState(0) and (1) would share entries.
            cache = None
        if kind == "text":
            items = [str(item) for item in items]
        failures = {}  # position -> reason; only ever filled when skipping
        keys = None
        if cache is not None or augment:
            keys = self._item_keys(items, kind, augment, failures if skip else None)
        found = cache.get_many([k for k in keys if k is not None]) if cache is not None else {}
        vectors = [found.get(key) for key in keys] if keys is not None else [None] * len(items)
        todo = {}  # identity (key, or position without keys) -> first position
        for index, vector in enumerate(vectors):
            if vector is None and index not in failures:
                todo.setdefault(keys[index] if keys is not None else index, index)
        if todo:
            positions = list(todo.values())
            spec = self._spec_fingerprint(augment) if cache is not None else None
            fresh, failed, changed = self._run_model(
                items, positions, kind, augment, keys, skip, spec
            )
            self._check_finite(fresh, positions, items, kind)
            fresh_by_id = {ident: vector for ident, vector in zip(todo, fresh) if vector is not None}
            failed_ids = {ident: failed[pos] for ident, pos in zip(todo, positions) if pos in failed}
            if cache is not None:
                # A file rewritten since it was keyed holds other content than its key
                # says: its embedding (of the new bytes) is returned but not stored.
                cache.put_many({ident: vector for ident, vector in fresh_by_id.items()
                                if todo[ident] not in changed})
            for index in range(len(items)):
                if vectors[index] is None and index not in failures:
                    ident = keys[index] if keys is not None else index
                    if ident in failed_ids:
                        failures[index] = failed_ids[ident]
                    else:
                        vectors[index] = fresh_by_id[ident]
        kept = np.array([i for i in range(len(items)) if i not in failures], dtype=np.intp)
        if failures:
            self._report_skipped(items, failures)
        out = np.stack([vectors[i] for i in kept]).astype(np.float32, copy=False)
        if self.normalize:
            out = l2_normalize(out).astype(np.float32)
        return out, kept

    def _check_finite(self, vectors, positions, items, kind):
        """Refuse non-finite model outputs: a NaN row would poison every score downstream."""
        bad = [
            pos for pos, vector in zip(positions, vectors)
            if vector is not None and not np.isfinite(vector).all()
        ]
        if not bad:
            return
        from .models import resolve_device, resolve_precision

        precision = resolve_precision(self.precision, resolve_device(self.device))
        raise ValueError(
            f"{self.model} returned NaN or inf embeddings for {len(bad)} of {len(items)} "
            f"{kind}s (e.g. {_describe(items[bad[0]], bad[0])}); nothing was cached. "
            + (
                f"Under precision={precision!r} activations can overflow: try "
                "precision='fp32'. "
                if precision != "fp32"
                else ""
            )
            + "If fp32 does the same, the model's weights hold NaN or inf."
        )

    def _report_skipped(self, items, failures):
        listed = "; ".join(failures[i] for i in sorted(failures)[:20])
        more = f"; and {len(failures) - 20} more" if len(failures) > 20 else ""
        if len(failures) == len(items):
            raise UnreadableImageError(
                f"None of the {len(items)} images could be read: {listed}{more}"
            )
        warnings.warn(
            f"on_error='skip' dropped {len(failures)} of {len(items)} images (positions "
            f"{sorted(failures)[:20]}{'...' if len(failures) > 20 else ''}): {listed}{more}. "
            "Use transform(X, return_indices=True) to keep labels aligned.",
            UnreadableImageWarning,
            stacklevel=_caller_stacklevel(),  # the depth varies with the entry point
        )

    def _modality_of(self, items, modality=None):
        return _split_modality(items, "image")

    def _item_keys(self, items, kind, augment, failures=None):
        """Content keys; with ``failures`` given, an unreadable file gets ``None``."""
        spec = self._spec_fingerprint(augment)
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

    def _run_model(self, items, positions, kind, augment, keys, skip, spec=None):
        """Embed ``items[positions]``: (one vector or None per position, failures, changed).

        Images are decoded batch by batch, by ``n_jobs`` threads while the model runs
        the previous batch; with ``skip`` an image that fails to decode is left out of
        its batch and reported in ``failures`` (position -> reason). With ``spec`` (a
        cache is in use) each file is decoded from the bytes it is re-keyed from, and
        ``changed`` holds the positions whose key no longer matches.
        """
        import torch

        loaded = self._loaded
        batches = [positions[batch] for batch in iter_batches(len(positions), self.batch_size)]
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(positions), desc=f"{type(self).__name__} ({kind}s)", unit=kind)
        vectors, failures, changed = [], {}, set()
        if kind == "text":
            decoded = ((chunk, None) for chunk in batches)
        else:
            decoder = _ItemDecoder(items, loaded, None if augment else loaded.preprocess, spec, keys)
            decoded = _decode_batches(decoder, batches, _decode_workers(self.n_jobs, loaded.device))
        with contextlib.closing(decoded):
            for chunk, results in decoded:
                readable = chunk if results is None else self._collect(results, failures, changed, skip)
                features = None
                if readable:
                    with torch.inference_mode():
                        features = self._forward_chunk(items, kind, augment, results, readable, keys, loaded)
                    features = iter(features.float().cpu().numpy())
                vectors.extend(None if i in failures else next(features) for i in chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return vectors, failures, changed

    @staticmethod
    def _collect(results, failures, changed, skip):
        """The positions decoded in one batch; the others go to ``failures`` (or raise)."""
        readable = []
        for index, outcome in results:
            if isinstance(outcome, Exception):
                if not skip:
                    raise outcome
                failures[index] = str(outcome)  # names the file, or the item's position
                continue
            readable.append(index)
            if outcome[1]:
                changed.add(index)
        return readable

    def _forward_chunk(self, items, kind, augment, results, readable, keys, loaded):
        import torch

        if kind == "text":
            tokens = loaded.tokenizer([items[i] for i in readable]).to(loaded.device)
            return loaded.model.encode_text(tokens)
        decoded = [outcome[0] for _, outcome in results if not isinstance(outcome, Exception)]
        if augment:
            return self._augmented_features(decoded, [keys[i] for i in readable], loaded)
        pixels = torch.stack(decoded)
        if loaded.device.type == "cuda":
            pixels = pixels.pin_memory()  # lets the copy below run asynchronously
        return self._forward_images(loaded, pixels)

    def _augmented_features(self, images, keys, loaded):
        """Mean of ``n_augmentations`` views' normalised features, per decoded image."""
        import torch

        mean, std = _normalize_stats(loaded.preprocess)
        seed = 0 if self.random_state is None else self.random_state
        if isinstance(seed, np.random.RandomState):
            seed = int(seed.randint(2**31))
        total = None
        views = []
        for image, key in zip(images, keys):
            # Each image's views depend only on its content and the seed, so the result
            # does not depend on which other images share its batch.
            rng = np.random.default_rng([int(seed), int(key[:12], 16)])
            views.append([_augmented_view(image, loaded.image_size, mean, std, rng)
                          for _ in range(self.n_augmentations)])
        for view_index in range(self.n_augmentations):
            pixels = torch.stack([v[view_index] for v in views]).to(loaded.device)
            features = self._forward_images(loaded, pixels).float()
            features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            total = features if total is None else total + features
        return total / self.n_augmentations

    def _forward_images(self, loaded, pixels):
        return loaded.model.encode_image(pixels.to(loaded.device, loaded.dtype))


class CLIPEncoder(_BaseEncoder):
    """Embed images and texts with a CLIP-style model (open_clip or skvlm's own).

    Parameters
    ----------
    model : str, default="ViT-B-32"
        An open_clip architecture (see ``skvlm.models.list_models()``) or skvlm's
        ``"skvlm-tiny"`` / ``"skvlm-tiny-shared"``, which ship inside the package.
    pretrained : str, path or None, default="default"
        An open_clip tag (``"openai"``, ``"laion2b_s34b_b79k"``...), a local checkpoint
        file, ``None`` for a random initialisation (seed 0), or ``"default"``: the
        model's standard weights ("openai" where open_clip has it, else its first
        tag; the shipped file for skvlm's own models).
    modality : {"auto", "image", "text"}, default="auto"
        ``"auto"`` treats strings that are existing files as images and other strings
        as text; mixing both in one call is an error.
    batch_size : int, default=64
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    precision : {"auto", "fp32", "fp16", "bf16"}, default="auto"
        The precision of the model's weights. ``"auto"`` is the fastest that keeps
        results: half-precision weights on CUDA (bf16 where the GPU has bf16 units,
        else fp16; layer norms stay fp32, as in open_clip's own ``precision``), bf16
        weights on a CPU with native bf16 matrix units (AMX or AVX512-BF16), fp32
        elsewhere. ``"fp32"`` is exact. The precision is part of every cache key. A
        precision the device cannot run (fp16 on the CPU, bf16 on a GPU older than
        Ampere) is a ``ValueError``.
    normalize : bool, default=True
        L2-normalise each output row.
    cache : None, "memory", str, path or joblib.Memory, default=None
        Content-addressed embedding cache: ``"memory"`` keeps embeddings in this
        process; a directory (or a ``joblib.Memory``'s location) also stores them on
        disk, one checksummed file per embedding written atomically, so a second run
        does not run the model at all and several processes can share the folder.
        Damaged entries are recomputed with a ``CacheCorruptionWarning``.
    n_augmentations : int, default=0
        In ``fit_transform`` only, average the normalised features of this many random
        views (resized crop with scale 0.5-1 and a horizontal flip, as Tip-Adapter
        builds its cache) of each image. Off by default; it usually helps
        cache-based classifiers a little and costs ``n_augmentations`` forward passes.
    on_error : {"raise", "skip"}, default="raise"
        What an unreadable image (missing, truncated, corrupt, or over Pillow's
        decompression-bomb limit) does: ``"raise"`` an error naming the file (or the
        position of an in-memory image); ``"skip"`` drop it, list every dropped item
        in one ``UnreadableImageWarning``, and return only the readable rows (get their
        positions with ``transform(X, return_indices=True)``). Texts never fail.
    random_state : int, RandomState or None, default=None
        Seeds the augmentations (only used when ``n_augmentations > 0``).
    verbose : int, default=0
        Show a progress bar over batches.
    n_jobs : int or None, default=None
        Threads that decode and preprocess images while the model runs the previous
        batch. None keeps the model busy: up to 8 threads beside a GPU, up to 4 on
        the CPU, never more than the cores; 1 decodes in the calling thread; -1 uses
        every core. The rows, their order and ``on_error="skip"`` do not depend on it.

    Attributes
    ----------
    The model is loaded lazily on first use from a process-wide cache; the encoder
    has no fitted state, and pickles without its weights.

    Notes
    -----
    **Image inputs** are decoded as a person sees them: EXIF orientation is applied,
    transparency is composited over white (open_clip's ``convert("RGB")`` keeps the
    hidden colour of transparent pixels instead), 16-bit greyscale is scaled to 8 bits
    (not clipped to white), float images are read as [0, 1] (or [0, 255]) intensities,
    CMYK and palette images are converted to RGB. A truncated, corrupt or non-image
    file, one over ``PIL.Image.MAX_IMAGE_PIXELS`` (checked before decoding), or a
    strip the model's resize would blow up past that limit is an
    ``UnreadableImageError`` (a ``ValueError``) naming it, never a partly grey image.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import CLIPEncoder
    >>> encoder = CLIPEncoder(model="skvlm-tiny", pretrained=None, device="cpu")
    >>> images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    >>> encoder.transform(images).shape
    (2, 64)
    >>> emb = encoder.encode_text(["a photo of a red circle"])
    >>> round(float(np.linalg.norm(emb)), 5)
    1.0
    """

    _parameter_constraints = {
        **_BaseEncoder._parameter_constraints,
        "modality": [StrOptions({"auto", "image", "text"})],
    }

    def __init__(
        self,
        model="ViT-B-32",
        *,
        pretrained="default",
        modality="auto",
        batch_size=64,
        device="auto",
        precision="auto",
        normalize=True,
        cache=None,
        n_augmentations=0,
        on_error="raise",
        random_state=None,
        verbose=0,
        n_jobs=None,
    ):
        self.model = model
        self.pretrained = pretrained
        self.modality = modality
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.normalize = normalize
        self.cache = cache
        self.n_augmentations = n_augmentations
        self.on_error = on_error
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def encode_text(self, texts):
        """Embed strings with the text tower (whatever ``modality`` says).

        Returns
        -------
        ndarray of shape (n_texts, embed_dim), float32
        """
        self._validate_params()
        items = _as_items(texts)
        if items and not all(isinstance(t, str) for t in items):
            raise ValueError("encode_text takes strings only.")
        return self._encode_items(items, augment=False, modality="text")[0]

    def encode_images(self, images, return_indices=False):
        """Embed images with the image tower (whatever ``modality`` says).

        ``return_indices`` is as in :meth:`transform` (it matters with
        ``on_error="skip"``).

        Returns
        -------
        embeddings : ndarray of shape (n_kept, embed_dim), float32
        kept_indices : ndarray of shape (n_kept,), int
            Only with ``return_indices=True``.
        """
        self._validate_params()
        embeddings, kept = self._encode_items(_as_items(images), augment=False, modality="image")
        return (embeddings, kept) if return_indices else embeddings

    def _modality_of(self, items, modality=None):
        kind = _split_modality(items, modality or self.modality)
        if kind == "image" and (modality or self.modality) == "auto" and self.on_error == "raise":
            error = _missing_path_error(items)  # a guess, so the error says how to overrule it
            if error is not None:
                raise error
        return kind


class ImageEncoder(_BaseEncoder):
    """Embed images with a timm backbone (DINOv2, ViT, ConvNeXt...), pooled features.

    Parameters
    ----------
    model : str, default="vit_small_patch14_dinov2.lvd142m"
        A timm model name (``timm.list_models()``), or skvlm's own image-only
        ``"skvlm-tiny-ssl"`` (a SimCLR encoder trained on ``make_scenes(version=2)``,
        shipped in the package; no timm needed).
    pretrained : bool, "default", path or None, default="default"
        ``"default"``/``True`` loads timm's pretrained weights (network or the local
        hub cache); a path loads a local weights file; ``None``/``False`` is a random
        initialisation (seed 0).
    batch_size, device, precision, normalize, cache, n_augmentations, on_error, random_state, verbose, n_jobs
        As in :class:`CLIPEncoder`.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import ImageEncoder
    >>> encoder = ImageEncoder(model="test_vit", pretrained=None, device="cpu")
    >>> encoder.transform(np.zeros((1, 32, 32, 3), dtype=np.uint8)).shape
    (1, 64)
    """

    _kind = "timm"

    def __init__(
        self,
        model="vit_small_patch14_dinov2.lvd142m",
        *,
        pretrained="default",
        batch_size=64,
        device="auto",
        precision="auto",
        normalize=True,
        cache=None,
        n_augmentations=0,
        on_error="raise",
        random_state=None,
        verbose=0,
        n_jobs=None,
    ):
        self.model = model
        self.pretrained = pretrained
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.normalize = normalize
        self.cache = cache
        self.n_augmentations = n_augmentations
        self.on_error = on_error
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _weights_identity(self):
        if self.pretrained in ("default", True):
            from .models._registry import image_model_names, shipped_weights

            path = shipped_weights(self.model) if self.model in image_model_names() else None
            if path is not None:  # skvlm's own image models: the shipped file itself
                return "file:" + _file_identity(str(path))
            return f"timm-default:{self.model}"
        return super()._weights_identity()


    def _forward_images(self, loaded, pixels):
        return loaded.model(pixels.to(loaded.device, loaded.dtype))
