"""The machinery CLIPEncoder and ImageEncoder share: lazy model, the cache, batching."""

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin

from .._embedding_cache import _caller_stacklevel, resolve_cache
from .._images import UnreadableImageError
from .._math import iter_batches, l2_normalize
from .._sklearn import HasMethods, Interval, StrOptions, _DocLinkMixin, _fit_context
from ._augmentation import augmented_features
from ._decoding import _decode_batches, _decode_workers, _ItemDecoder
from ._inputs import UnreadableImageWarning, _as_items, _describe, _split_modality
from ._keys import item_keys, spec_fingerprint


@dataclass
class _Request:
    """One call's items and what is known of them so far (filled in step by step)."""

    items: list
    kind: str
    augment: bool
    skip: bool
    cache: object
    keys: list = None  # content keys, when a cache or augmentation needs them
    vectors: list = None  # one vector (or None, not known yet) per item
    failures: dict = field(default_factory=dict)  # position -> reason (skipped items)

    def __post_init__(self):
        if self.vectors is None:
            self.vectors = [None] * len(self.items)

    def identity(self, index):
        """What makes two items one: their key, else their position."""
        return self.keys[index] if self.keys is not None else index


class _BaseEncoder(_DocLinkMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
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
        from ..models import load_model

        return load_model(self.model, self.pretrained, self.device, self.precision, kind=self._kind)

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
        from .._sklearn import _get_output_config

        if _get_output_config("transform", self)["dense"] != "pandas":
            return embeddings
        import pandas as pd

        index = X.index[kept] if hasattr(X, "iloc") else kept
        return pd.DataFrame(embeddings, index=index, columns=self.get_feature_names_out())

    # ----------------------------------------------------------------- internals

    def _spec_fingerprint(self, augment):
        """Identity of everything that shapes an embedding, without loading the model."""
        return spec_fingerprint(self, augment)

    def _encode_items(self, items, augment, modality=None):
        """(embeddings of the readable items, their positions in ``items``)."""
        request = self._look_up(items, augment, modality)
        self._compute_missing(request)
        return self._assemble(request)

    def _look_up(self, items, augment, modality):
        """Step 1: the request, with every vector the cache already holds filled in."""
        if len(items) == 0:
            raise ValueError("X is empty: there is nothing to encode.")
        kind = self._modality_of(items, modality)
        cache = resolve_cache(self.cache)
        if augment and not isinstance(self.random_state, Integral):
            # Only an int seed makes the views reproducible from a key: every RandomState
            # has the same repr, so RandomState(0) and (1) would share entries.
            cache = None
        if kind == "text":
            items = [str(item) for item in items]
        request = _Request(items, kind, augment, self.on_error == "skip" and kind == "image", cache)
        if cache is not None or augment:
            request.keys = self._item_keys(
                items, kind, augment, request.failures if request.skip else None
            )
        found = (
            cache.get_many([k for k in request.keys if k is not None]) if cache is not None else {}
        )
        if request.keys is not None:
            request.vectors = [found.get(key) for key in request.keys]
        return request

    def _compute_missing(self, request):
        """Step 2: run the model once per distinct missing item; store what it gives."""
        todo = {}  # identity (key, or position without keys) -> first position
        for index, vector in enumerate(request.vectors):
            if vector is None and index not in request.failures:
                todo.setdefault(request.identity(index), index)
        if not todo:
            return
        positions = list(todo.values())
        spec = self._spec_fingerprint(request.augment) if request.cache is not None else None
        fresh, failed, changed = self._run_model(request, positions, spec)
        self._check_finite(fresh, positions, request.items, request.kind)
        fresh_by_id = {ident: vector for ident, vector in zip(todo, fresh) if vector is not None}
        failed_ids = {ident: failed[pos] for ident, pos in zip(todo, positions) if pos in failed}
        if request.cache is not None:
            # A file rewritten since it was keyed holds other content than its key
            # says: its embedding (of the new bytes) is returned but not stored.
            request.cache.put_many(
                {
                    ident: vector
                    for ident, vector in fresh_by_id.items()
                    if todo[ident] not in changed
                }
            )
        for index, vector in enumerate(request.vectors):
            if vector is None and index not in request.failures:
                ident = request.identity(index)
                if ident in failed_ids:
                    request.failures[index] = failed_ids[ident]
                else:
                    request.vectors[index] = fresh_by_id[ident]

    def _assemble(self, request):
        """Step 3: the rows of the readable items in order, reporting the skipped ones."""
        failures = request.failures
        kept = np.array([i for i in range(len(request.items)) if i not in failures], dtype=np.intp)
        if failures:
            self._report_skipped(request.items, failures)
        out = np.stack([request.vectors[i] for i in kept]).astype(np.float32, copy=False)
        if self.normalize:
            out = l2_normalize(out).astype(np.float32)
        return out, kept

    def _check_finite(self, vectors, positions, items, kind):
        """Refuse non-finite model outputs: a NaN row would poison every score downstream."""
        bad = [
            pos
            for pos, vector in zip(positions, vectors)
            if vector is not None and not np.isfinite(vector).all()
        ]
        if not bad:
            return
        from ..models import resolve_device, resolve_precision

        precision = resolve_precision(self.precision, resolve_device(self.device))
        raise ValueError(
            f"{self.model} returned NaN or inf embeddings for {len(bad)} of {len(items)} "
            f"{kind}s (e.g. {_describe(items[bad[0]], bad[0])}); nothing was cached. "
            + (
                f"Under precision={precision!r} activations can overflow: try precision='fp32'. "
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
        return item_keys(self._spec_fingerprint(augment), items, kind, failures)

    def _run_model(self, request, positions, spec=None):
        """Embed ``request.items[positions]``: (one vector or None per position, failures,
        changed).

        Images are decoded batch by batch, by ``n_jobs`` threads while the model runs
        the previous batch; with ``skip`` an image that fails to decode is left out of
        its batch and reported in ``failures`` (position -> reason). With ``spec`` (a
        cache is in use) each file is decoded from the bytes it is re-keyed from, and
        ``changed`` holds the positions whose key no longer matches.
        """
        import torch

        items, kind, augment, keys = request.items, request.kind, request.augment, request.keys
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
            decoder = _ItemDecoder(
                items, loaded, None if augment else loaded.preprocess, spec, keys
            )
            decoded = _decode_batches(decoder, batches, _decode_workers(self.n_jobs, loaded.device))
        with contextlib.closing(decoded):
            for chunk, results in decoded:
                readable = (
                    chunk
                    if results is None
                    else self._collect(results, failures, changed, request.skip)
                )
                features = None
                if readable:
                    with torch.inference_mode():
                        features = self._forward_chunk(request, results, readable, loaded)
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

    def _forward_chunk(self, request, results, readable, loaded):
        import torch

        items, keys = request.items, request.keys
        if request.kind == "text":
            tokens = loaded.tokenizer([items[i] for i in readable]).to(loaded.device)
            return loaded.model.encode_text(tokens)
        decoded = [outcome[0] for _, outcome in results if not isinstance(outcome, Exception)]
        if request.augment:
            return augmented_features(self, decoded, [keys[i] for i in readable], loaded)
        pixels = torch.stack(decoded)
        if loaded.device.type == "cuda":
            pixels = pixels.pin_memory()  # lets the copy below run asynchronously
        return self._forward_images(loaded, pixels)

    def _forward_images(self, loaded, pixels):
        return loaded.model.encode_image(pixels.to(loaded.device, loaded.dtype))
