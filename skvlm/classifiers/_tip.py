"""Tip-Adapter (Zhang et al., ECCV 2022) and Tip-X (Udandarao et al., ICCV 2023), training-free."""

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .._math import iter_batches, log_softmax
from .._sklearn import Interval, StrOptions, _fit_context
from ._base import (
    BATCH_SIZE_CONSTRAINT,
    LOGIT_SCALE,
    _ScoreClassifierMixin,
    validate_queries,
    validate_support,
)
from ._cache import cache_logits, chunked_scores, class_sums, sort_by_class
from ._search import count_correct, reference_range, sweep_groups
from ._text_weights import TEXT_PARAMETER_CONSTRAINTS, resolve_text_weights, uses_text

_NON_NEGATIVE = [Interval(Real, 0, None, closed="left")]

#: Tip-Adapter's search_scale [beta_max, alpha_max] per dataset (gaopengcuhk/Tip-Adapter
#: d0e2d6f ``configs/<dataset>.yaml:17``, search_step [200, 20] at ``:18``); ``utils.py:103-104``
#: turns each into a list from 0.1, and ``:109-110`` loops beta outside alpha.
TIP_ADAPTER_SEARCH_SCALES = {
    "ImageNet": (7, 3),
    "Caltech101": (12, 5),
    "OxfordPets": (7, 3),
    "StanfordCars": (20, 10),
    "Flowers102": (50, 50),
    "Food101": (10, 10),
    "FGVCAircraft": (30, 30),
    "SUN397": (12, 10),
    "DTD": (13, 13),
    "EuroSAT": (12, 10),
    "UCF101": (7, 3),
}
#: A small grid around the paper's ImageNet optimum (beta 5.5, alpha 1) and the per-dataset
#: ranges above; a study's default.
TIP_ADAPTER_DEFAULT_GRID = {
    "beta": [1.0, 2.0, 3.5, 5.5, 8.0, 12.0],
    "alpha": [0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
}
#: SuS-X's Tip-X grid (vishaal27/SuS-X d7d4d37 ``tipx.py:70-75``, loops alpha, beta, gamma at
#: ``:81-97``): 20 x 200 x 50 values.
TIP_X_REFERENCE_GRID = {
    "alpha": reference_range(0.1, 50, 20),
    "beta": reference_range(1, 50, 200),
    "gamma": reference_range(0.1, 30, 50),
}
#: A small Tip-X grid (a study's default).
TIP_X_DEFAULT_GRID = {
    "alpha": [0.5, 1.0, 2.0, 4.0, 8.0],
    "beta": [1.0, 3.0, 5.5, 8.0],
    "gamma": [0.1, 0.3, 1.0, 3.0],
}


class _CacheModelMixin:
    """Fit-time state shared by the cache models: class-sorted keys and text weights."""

    def _fit_cache(self, X, y, require_text):
        X, y_idx = validate_support(self, X, y)
        keys, key_classes, starts = sort_by_class(X, y_idx, len(self.classes_))
        self.cache_keys_ = keys
        self.cache_classes_ = key_classes
        self._class_starts = starts
        needs_text = require_text or uses_text(self)
        self.text_weights_ = (
            resolve_text_weights(self, self.classes_, self.n_features_in_) if needs_text else None
        )

    def _text_logits(self, X):
        return X @ (LOGIT_SCALE * self.text_weights_.T)  # scale the small matrix


class TipAdapterClassifier(_CacheModelMixin, _ScoreClassifierMixin, ClassifierMixin, BaseEstimator):
    """Training-free Tip-Adapter: a key-value cache of the support set added to zero-shot.

    Keys F are the L2-normalised training rows, values L their one-hot labels.
    For a normalised query x: A = exp(−beta · (1 − x Fᵀ)) and

    - scores = ``100 · x W_textᵀ + alpha · A L`` with text weights,
    - scores = ``A L`` without (a soft nearest-neighbour vote).

    Parameters
    ----------
    alpha : float, default=1.0
        Weight of the cache logits (the residual ratio).
    beta : float, default=5.5
        Sharpness of the affinity. The defaults are the paper's ImageNet setting
        (Sec. 4.2); the reference code starts from (alpha, beta) = (1.17, 1) and
        searches both on validation data, which ``GridSearchCV`` does here.
    class_names, templates, encoder, text_weights, descriptions
        Optional text classifier, as in :class:`ZeroShotClassifier`.
    batch_size : int, default=512
        Queries scored at a time: memory is bounded by ``batch_size × n_support``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    cache_keys_ : ndarray of shape (n_support, n_features)
        Normalised training rows, sorted by class (float32 or float64 as given).
    cache_classes_ : ndarray of shape (n_support,)
        Class index (into ``classes_``) of each key: the one-hot values.
    text_weights_ : ndarray of shape (n_classes, n_features) or None
    n_features_in_ : int

    References
    ----------
    Zhang et al. (2022), "Tip-Adapter: Training-free adaption of CLIP for few-shot
    classification", ECCV, Eq. 5-6; github.com/gaopengcuhk/Tip-Adapter ``main.py``.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import TipAdapterClassifier
    >>> X = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    >>> clf = TipAdapterClassifier(text_weights=np.eye(2)).fit(X, ["cat", "cat", "dog", "dog"])
    >>> clf.predict([[0.8, 0.3], [0.2, 0.9]]).tolist()
    ['cat', 'dog']
    """

    _parameter_constraints = {
        "alpha": _NON_NEGATIVE,
        "beta": _NON_NEGATIVE,
        **TEXT_PARAMETER_CONSTRAINTS,
        "batch_size": BATCH_SIZE_CONSTRAINT,
    }

    def __init__(
        self,
        alpha=1.0,
        *,
        beta=5.5,
        class_names=None,
        templates="simple",
        encoder=None,
        text_weights=None,
        descriptions=None,
        batch_size=512,
    ):
        self.alpha = alpha
        self.beta = beta
        self.class_names = class_names
        self.templates = templates
        self.encoder = encoder
        self.text_weights = text_weights
        self.descriptions = descriptions
        self.batch_size = batch_size

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Store the cache (keys and labels) and build the text classifier if any.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._fit_cache(X, y, require_text=False)
        return self

    @classmethod
    def _search_grids(cls, search, dataset):
        if search == "default":
            return TIP_ADAPTER_DEFAULT_GRID
        beta_max, alpha_max = TIP_ADAPTER_SEARCH_SCALES[dataset or "ImageNet"]
        return {
            "beta": reference_range(0.1, beta_max, 200),
            "alpha": reference_range(0.1, alpha_max, 20),
        }

    def _unused_search_params(self):
        return () if uses_text(self) else ("alpha",)

    def _scores(self, X):
        X = validate_queries(self, X)
        return chunked_scores(self._score_chunk, X, len(self.classes_), self.batch_size)

    _grid_params = ("alpha", "beta")

    def _grid_correct(self, X, target, sweep):
        """Correct predictions per (alpha, beta) of ``sweep``: one exp per beta and chunk."""
        X = validate_queries(self, X)
        correct = np.zeros(len(sweep), dtype=np.int64)
        for rows in iter_batches(X.shape[0], self.batch_size):
            shifted = X[rows] @ self.cache_keys_.T
            shifted -= 1.0
            text = None if self.text_weights_ is None else self._text_logits(X[rows])
            for beta, indices in sweep_groups(sweep, "beta", self.beta):
                affinity = shifted * beta
                cache = class_sums(np.exp(affinity, out=affinity), self._class_starts)
                for i in indices:
                    scores = (
                        cache if text is None else text + sweep[i].get("alpha", self.alpha) * cache
                    )
                    correct[i] += count_correct(scores.astype(np.float32), target[rows])
        return correct

    def _score_chunk(self, X):
        cache = cache_logits(X, self.cache_keys_, self._class_starts, self.beta)
        if self.text_weights_ is None:
            return cache
        return self._text_logits(X) + self.alpha * cache


class TipXClassifier(_CacheModelMixin, _ScoreClassifierMixin, ClassifierMixin, BaseEstimator):
    """Training-free Tip-X: Tip-Adapter plus KL affinities of class-probability signatures.

    With normalised queries X, keys F, text weights W and one-hot labels L:
    A = X Fᵀ; P = softmax(X Wᵀ / τ), S = softmax(F Wᵀ / τ) (no factor 100);
    KL[i, j] = Σ_c P[i,c] (log P[i,c] − log S[j,c]); the KL matrix is min-max
    rescaled onto the range of A,
    K̃ = (KL − min KL) / (max KL − min KL) · (max A − min A) + min A, and

    scores = ``100 · X Wᵀ + alpha · exp(−beta (1 − A)) L + gamma · (−K̃) L``.

    Parameters
    ----------
    alpha : float, default=1.0
        Weight of the Tip-Adapter cache logits.
    beta : float, default=5.5
        Sharpness of the cache affinity.
    gamma : float, default=1.0
        Weight of the KL logits. The reference searches (alpha, beta, gamma) over
        [0.1, 50] × [1, 50] × [0.1, 30] on validation data.
    temperature : float, default=0.5
        τ of the signatures (the reference's ``--temperature`` default).
    rescale : {"batch", "fit"}, default="batch"
        Where min/max come from. ``"batch"``: the whole (n_queries × n_support) KL and
        A matrices of the queries being scored, as the reference does, so a query's
        scores depend on the other queries in the call (all chunks share one
        min/max; never per chunk). ``"fit"``: the support-vs-support matrices at fit
        time, so scores do not depend on the batch (use it where subset invariance
        matters, e.g. serving one query at a time).
    class_names, templates, encoder, text_weights, descriptions
        The text classifier, as in :class:`ZeroShotClassifier`: required.
    batch_size : int, default=512
        Queries scored at a time: memory is bounded by ``batch_size × n_support``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    cache_keys_ : ndarray of shape (n_support, n_features)
    cache_classes_ : ndarray of shape (n_support,)
    text_weights_ : ndarray of shape (n_classes, n_features)
    support_log_signatures_ : ndarray of shape (n_support, n_classes)
        log S, the log class-probability signatures of the keys.
    affinity_range_, kl_range_ : tuple of float or None
        (min, max) of A and KL over support × support, computed (in chunks) only when
        ``rescale="fit"``; None otherwise.
    n_features_in_ : int

    Notes
    -----
    The reference (SuS-X ``tipx.py``) leaves the last ``n mod 100`` queries with
    zero KL, rescales test KL with the validation affinities and casts to fp16; this
    class implements the formula above instead. Because the KL logits are linear in
    KL, ``K̃ L = a · KL L + b · 1ᵀL`` with a, b from the global min/max, and
    ``KL L = (Σ_c P log P) nᵀ − P (log Sᵀ L)``: the scores need one chunked pass, the
    rescaling is applied once at the end, and the (chunk × n_support) KL matrix is
    formed only to find its min and max (not at all with ``rescale="fit"``).

    References
    ----------
    Udandarao, Gupta & Albanie (2023), "SuS-X: Training-free name-only transfer of
    vision-language models", ICCV, Sec. 3.2 (Tip-X); github.com/vishaal27/SuS-X ``tipx.py``.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import TipXClassifier
    >>> X = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    >>> clf = TipXClassifier(text_weights=np.eye(2)).fit(X, ["cat", "cat", "dog", "dog"])
    >>> clf.predict([[0.8, 0.3], [0.2, 0.9]]).tolist()
    ['cat', 'dog']
    """

    _parameter_constraints = {
        "alpha": _NON_NEGATIVE,
        "beta": _NON_NEGATIVE,
        "gamma": _NON_NEGATIVE,
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "rescale": [StrOptions({"batch", "fit"})],
        **TEXT_PARAMETER_CONSTRAINTS,
        "batch_size": BATCH_SIZE_CONSTRAINT,
    }

    def __init__(
        self,
        alpha=1.0,
        *,
        beta=5.5,
        gamma=1.0,
        temperature=0.5,
        rescale="batch",
        class_names=None,
        templates="simple",
        encoder=None,
        text_weights=None,
        descriptions=None,
        batch_size=512,
    ):
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.temperature = temperature
        self.rescale = rescale
        self.class_names = class_names
        self.templates = templates
        self.encoder = encoder
        self.text_weights = text_weights
        self.descriptions = descriptions
        self.batch_size = batch_size

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Store the cache, the text classifier and the keys' log-signatures.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._fit_cache(X, y, require_text=True)
        log_s = self._log_signatures(self.cache_keys_)
        self.support_log_signatures_ = log_s
        # Σ_{j in class c} log S[j, :], so that P (log Sᵀ L) = (P @ this.T).
        self._class_log_signatures = class_sums(log_s.T, self._class_starts).T
        # The support-vs-support ranges cost O(n_support² · n_classes): only for "fit".
        self.affinity_range_, self.kl_range_ = (
            self._ranges(self.cache_keys_) if self.rescale == "fit" else (None, None)
        )
        return self

    @classmethod
    def _search_grids(cls, search, dataset):
        return TIP_X_DEFAULT_GRID if search == "default" else TIP_X_REFERENCE_GRID

    _grid_params = ("alpha", "beta", "gamma")

    def _log_signatures(self, X):
        return log_softmax((X @ self.text_weights_.T) / X.dtype.type(self.temperature))

    def _kl(self, log_p):
        """KL[i, j] of one chunk (queries' log-signatures vs all keys)."""
        p = np.exp(log_p)
        kl = p @ self.support_log_signatures_.T
        np.subtract((p * log_p).sum(axis=1, keepdims=True), kl, out=kl)
        return kl

    def _ranges(self, X):
        """(min, max) of A = X Fᵀ and of KL over all rows of X, in chunks."""
        a_lo = kl_lo = np.inf
        a_hi = kl_hi = -np.inf
        for rows in iter_batches(X.shape[0], self.batch_size):
            affinity = X[rows] @ self.cache_keys_.T
            a_lo, a_hi = min(a_lo, affinity.min()), max(a_hi, affinity.max())
            del affinity
            kl = self._kl(self._log_signatures(X[rows]))
            kl_lo, kl_hi = min(kl_lo, kl.min()), max(kl_hi, kl.max())
        return (float(a_lo), float(a_hi)), (float(kl_lo), float(kl_hi))

    def _validated_queries(self, X):
        X = validate_queries(self, X)
        if self.rescale == "fit" and self.kl_range_ is None:
            raise ValueError(
                "TipXClassifier was fitted with rescale='batch'; refit it after "
                "set_params(rescale='fit') so that the support ranges are computed."
            )
        return X

    def _rescaling(self, ranges):
        """(a, b) of K̃ = a · KL + b, from the queries' ranges or the support's."""
        if self.rescale == "batch":
            return _rescale_map(ranges.kl, ranges.affinity)
        return _rescale_map(self.kl_range_, self.affinity_range_)

    def _scores(self, X):
        X = self._validated_queries(X)
        n_classes = len(self.classes_)
        partial = np.empty((X.shape[0], n_classes), dtype=np.float32)
        kl_by_class = np.empty((X.shape[0], n_classes), dtype=np.float32)
        ranges = _RunningRanges()
        # One pass: everything but the KL rescaling, which needs the global min/max
        # and enters linearly, so it is applied to the (n, C) sums at the end.
        for rows in iter_batches(X.shape[0], self.batch_size):
            partial[rows], kl_by_class[rows] = self._chunk_terms(
                X[rows], ranges if self.rescale == "batch" else None
            )
        scale, shift = self._rescaling(ranges)
        counts = np.diff(np.append(self._class_starts, len(self.cache_keys_)))
        kl_by_class *= -self.gamma * scale
        partial += kl_by_class
        partial -= self.gamma * shift * counts
        return partial

    def _chunk_terms(self, chunk, ranges):
        """Text + cache logits and KL L of one chunk; updates ``ranges`` when given."""
        affinity = chunk @ self.cache_keys_.T
        if ranges is not None:
            ranges.update_affinity(affinity)
        affinity -= 1.0
        affinity *= self.beta
        cache = class_sums(np.exp(affinity, out=affinity), self._class_starts)
        del affinity
        return self._text_logits(chunk) + self.alpha * cache, self._kl_by_class(chunk, ranges)

    def _kl_by_class(self, chunk, ranges):
        """KL L of one chunk, ``(Σ_c P log P) nᵀ − P (log Sᵀ L)``; updates the KL range."""
        log_p = self._log_signatures(chunk)
        p = np.exp(log_p)
        neg_entropy = (p * log_p).sum(axis=1, keepdims=True)
        if ranges is not None:
            cross = p @ self.support_log_signatures_.T  # KL = neg_entropy - cross
            ranges.update_kl(
                neg_entropy[:, 0] - cross.max(axis=1), neg_entropy[:, 0] - cross.min(axis=1)
            )
            del cross
        counts = np.diff(np.append(self._class_starts, len(self.cache_keys_)))
        return neg_entropy * counts - p @ self._class_log_signatures.T

    def _grid_correct(self, X, target, sweep):
        """Correct predictions per (alpha, beta, gamma) of ``sweep``, as ``_scores`` computes.

        The KL terms and the rescaling do not depend on the sweep (one pass); the
        affinities are computed once per chunk, exponentiated once per beta, and alpha
        and gamma only weight the (chunk, n_classes) sums.
        """
        X = self._validated_queries(X)
        batch = self.rescale == "batch"
        kl_by_class = np.empty((X.shape[0], len(self.classes_)), dtype=np.float32)
        ranges = _RunningRanges()
        for rows in iter_batches(X.shape[0], self.batch_size):
            if batch:
                ranges.update_affinity(X[rows] @ self.cache_keys_.T)
            kl_by_class[rows] = self._kl_by_class(X[rows], ranges if batch else None)
        scale, shift = self._rescaling(ranges)
        counts = np.diff(np.append(self._class_starts, len(self.cache_keys_)))
        correct = np.zeros(len(sweep), dtype=np.int64)
        for rows in iter_batches(X.shape[0], self.batch_size):
            shifted = X[rows] @ self.cache_keys_.T
            shifted -= 1.0
            text = self._text_logits(X[rows])
            for beta, by_beta in sweep_groups(sweep, "beta", self.beta):
                affinity = shifted * beta
                cache = class_sums(np.exp(affinity, out=affinity), self._class_starts)
                by_alpha = sweep_groups([sweep[i] for i in by_beta], "alpha", self.alpha)
                for alpha, positions in by_alpha:
                    base = (text + alpha * cache).astype(np.float32)
                    for i in (by_beta[p] for p in positions):
                        gamma = sweep[i].get("gamma", self.gamma)
                        scores = base + kl_by_class[rows] * (-gamma * scale)
                        scores -= gamma * shift * counts
                        correct[i] += count_correct(scores, target[rows])
        return correct


class _RunningRanges:
    """Global (min, max) of A and KL accumulated over chunks."""

    def __init__(self):
        self.affinity = (np.inf, -np.inf)
        self.kl = (np.inf, -np.inf)

    def update_affinity(self, affinity):
        lo, hi = self.affinity
        self.affinity = (min(lo, float(affinity.min())), max(hi, float(affinity.max())))

    def update_kl(self, row_min, row_max):
        lo, hi = self.kl
        self.kl = (min(lo, float(row_min.min())), max(hi, float(row_max.max())))


def _rescale_map(kl_range, affinity_range):
    """(a, b) with K̃ = a · KL + b; a constant KL maps to min A (the reference divides by 0)."""
    (kl_lo, kl_hi), (a_lo, a_hi) = kl_range, affinity_range
    if kl_hi <= kl_lo:
        return 0.0, a_lo
    scale = (a_hi - a_lo) / (kl_hi - kl_lo)
    return scale, a_lo - scale * kl_lo
