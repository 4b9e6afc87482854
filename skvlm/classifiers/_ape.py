"""APE (Zhu et al., ICCV 2023), training-free: adaptive prior refinement of the cache."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .._math import iter_batches, l2_normalize
from .._sklearn import Interval, _fit_context
from ._base import BATCH_SIZE_CONSTRAINT, _ScoreClassifierMixin, validate_queries
from ._cache import cache_logits, chunked_scores, class_sums
from ._search import count_correct, reference_range, sweep_groups
from ._text_weights import TEXT_PARAMETER_CONSTRAINTS
from ._tip import _NON_NEGATIVE, _CacheModelMixin

# The reference's guard inside log2((L + eps) / (p + eps)).
_KL_EPS = 1e-6

#: APE's per-dataset training-free config (yangyangyang127/APE 70460de ``configs/<dataset>.yaml``
#: lines 9-10 / ImageNet 12-13 and 18-23): search_scale (beta, alpha, gamma), search_step,
#: training_free_feat_num (of RN50's 1024 channels) and w_training_free[1] (the variance weight).
#: ``main.py:78-80`` turns scale and step into lists (beta, alpha from 0.1; gamma from 0) and
#: ``:81-83`` loops beta, alpha, gamma.
APE_REFERENCE_CONFIGS = {
    "ImageNet": ((7, 7, 0.5), (200, 20, 5), 500, 0.3),
    "Caltech101": ((7, 7, 1), (200, 20, 20), 800, 0.5),
    "OxfordPets": ((7, 7, 1), (200, 20, 20), 800, 0.3),
    "StanfordCars": ((10, 7, 1), (200, 20, 20), 500, 0.4),
    "Flowers102": ((7, 7, 1), (200, 20, 20), 700, 0.6),
    "Food101": ((7, 7, 1), (200, 20, 20), 700, 0.7),
    "FGVCAircraft": ((20, 10, 1), (200, 20, 20), 800, 0.9),
    "SUN397": ((10, 7, 1), (200, 20, 20), 800, 0.3),
    "DTD": ((7, 7, 1), (200, 20, 20), 400, 0.5),
    "EuroSAT": ((30, 5, 1.5), (200, 20, 20), 700, 0.1),
    "UCF101": ((10, 7, 1.5), (200, 20, 20), 700, 0.7),
}
#: A small APE grid around the reference's ImageNet start (beta 1, alpha 2, gamma 0.1).
APE_DEFAULT_GRID = {
    "beta": [1.0, 3.0, 5.5, 8.0],
    "alpha": [0.5, 1.0, 2.0, 4.0],
    "gamma": [0.0, 0.1, 0.2, 0.4],
}


class APEClassifier(_CacheModelMixin, _ScoreClassifierMixin, ClassifierMixin, BaseEstimator):
    """Training-free APE: Tip-Adapter on a selected feature subset with refined values.

    1. Feature selection: for each feature k, the inter-class similarity
       ``sim_k`` = mean over all pairs (u, v) of rows of different classes, rows
       being each class's text weight and its normalised support rows, of
       ``u_k · v_k``; the variance ``var_k`` of the text weights over classes
       (ddof=1). The ``n_features_to_select`` features of largest
       ``−(1 − variance_weight) · sim_k + variance_weight · var_k`` are kept.
    2. On those features (rows re-normalised: queries x', keys F', text W'):
       R = softmax(F' W'ᵀ) over classes (no temperature, as in the reference), and
       each key's value is re-weighted by ``exp(gamma · D_j)`` with
       ``D_j = log2((1 + ε) / (R[j, y_j] + ε))``, the KL divergence (bits) of its
       one-hot label from R (ε = 1e-6).
    3. scores = ``100 · x Wᵀ`` (all features) ``+ alpha · exp(−beta (1 − x' F'ᵀ)) (D-weighted L)``.

    Parameters
    ----------
    alpha : float, default=2.0
        Weight of the cache logits.
    beta : float, default=1.0
        Sharpness of the affinity.
    gamma : float, default=0.1
        Strength of the value refinement. alpha, beta, gamma default to the reference's
        ImageNet ``init_*`` values; it then searches beta in [0.1, 7], alpha in
        [0.1, 7], gamma in [0, 0.5] on validation data.
    n_features_to_select : int or float in (0, 1], default=0.5
        Features kept: a float is a share of the embedding width (rounded, at least
        1), an int a count (capped at the width). The reference keeps 400-800 of
        RN50's 1024 channels (0.39-0.78; ImageNet 500, about 0.5), so the default is
        relative: an absolute 500 would keep 98 % of a 512-d ViT-B/32 embedding and
        all of a 64-d one. Keeping every channel (no selection) is warned about.
    variance_weight : float in [0, 1], default=0.3
        λ of the criterion; the reference's ``w_training_free = [1 − λ, λ]`` (ImageNet:
        [0.7, 0.3]). Only the ratio matters for the ranking, so one number suffices.
    class_names, templates, encoder, text_weights, descriptions
        The text classifier, as in :class:`ZeroShotClassifier`: required.
    batch_size : int, default=512
        Queries scored at a time: memory is bounded by ``batch_size × n_support``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    selected_features_ : ndarray of shape (n_selected,)
        Indices of the kept features, best first.
    cache_keys_ : ndarray of shape (n_support, n_selected)
        Normalised support rows on the kept features, sorted by class.
    cache_classes_ : ndarray of shape (n_support,)
    value_weights_ : ndarray of shape (n_support,)
        exp(gamma · D_j), the refined one-hot values' scale of each key.
    text_weights_ : ndarray of shape (n_classes, n_features)
    n_features_in_ : int

    References
    ----------
    Zhu et al. (2023), "Not all features matter: Enhancing few-shot CLIP with adaptive
    prior refinement", ICCV, Eq. 3-8; github.com/yangyangyang127/APE ``main.py`` and
    ``utils.cal_criterion``.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import APEClassifier
    >>> X = np.array([[1.0, 0.1, 0.0], [1.0, -0.1, 0.1], [0.1, 1.0, 0.0], [-0.1, 1.0, 0.1]])
    >>> clf = APEClassifier(text_weights=np.eye(2, 3), n_features_to_select=2)
    >>> clf.fit(X, ["cat", "cat", "dog", "dog"]).predict([[0.8, 0.3, 0.0]]).tolist()
    ['cat']
    """

    _parameter_constraints = {
        "alpha": _NON_NEGATIVE,
        "beta": _NON_NEGATIVE,
        "gamma": _NON_NEGATIVE,
        "n_features_to_select": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="right"),
        ],
        "variance_weight": [Interval(Real, 0, 1, closed="both")],
        **TEXT_PARAMETER_CONSTRAINTS,
        "batch_size": BATCH_SIZE_CONSTRAINT,
    }

    def __init__(
        self,
        alpha=2.0,
        *,
        beta=1.0,
        gamma=0.1,
        n_features_to_select=0.5,
        variance_weight=0.3,
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
        self.n_features_to_select = n_features_to_select
        self.variance_weight = variance_weight
        self.class_names = class_names
        self.templates = templates
        self.encoder = encoder
        self.text_weights = text_weights
        self.descriptions = descriptions
        self.batch_size = batch_size

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Select features, store the refined cache and the text classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._fit_cache(X, y, require_text=True)
        if len(self.classes_) < 2:
            raise ValueError(
                "APEClassifier needs at least 2 classes (its feature criterion compares "
                f"classes), got one class: {self.classes_[:1].tolist()}."
            )
        keys, text = self.cache_keys_.astype(np.float64), self.text_weights_.astype(np.float64)
        criterion = _selection_criterion(keys, text, self._class_starts, self.variance_weight)
        k = self._n_selected()
        selected = np.argsort(-criterion, kind="stable")[:k]
        keys = l2_normalize(keys[:, selected]).astype(self.cache_keys_.dtype)
        own_prob = _own_class_probability(
            keys, l2_normalize(text[:, selected]), self.cache_classes_
        )
        divergence = np.log2((1.0 + _KL_EPS) / (own_prob + _KL_EPS))
        self.selected_features_ = selected
        self.cache_keys_ = keys
        self.value_weights_ = np.exp(self.gamma * divergence).astype(np.float32)
        self._divergence = divergence
        return self

    def _n_selected(self):
        """Channels kept: a share of the width or a count, capped; warns when it is all."""
        n, width = self.n_features_to_select, self.n_features_in_
        k = min(n, width) if isinstance(n, Integral) else max(1, int(round(n * width)))
        if k >= width:
            warnings.warn(
                f"APEClassifier keeps all {width} channels (n_features_to_select={n!r} on "
                f"{width}-d embeddings): no feature selection happens and APE reduces to "
                "Tip-Adapter with refined values. Give a share below 1 (e.g. 0.5, the "
                "reference keeps 0.39-0.78 of RN50's channels) or a smaller count.",
                UserWarning,
                stacklevel=4,  # _n_selected -> fit -> sklearn's _fit_context -> the caller
            )
        return k

    @classmethod
    def _search_grids(cls, search, dataset):
        if search == "default":
            return APE_DEFAULT_GRID
        (beta_max, alpha_max, gamma_max), (n_beta, n_alpha, n_gamma), n_kept, weight = (
            APE_REFERENCE_CONFIGS[dataset or "ImageNet"]
        )
        grid = {
            "beta": reference_range(0.1, beta_max, n_beta),
            "alpha": reference_range(0.1, alpha_max, n_alpha),
            "gamma": reference_range(0.0, gamma_max, n_gamma),
        }
        if dataset is not None:  # its channel share of RN50's 1024 and its criterion weight
            grid.update(n_features_to_select=[n_kept / 1024], variance_weight=[weight])
        return grid

    _grid_params = ("alpha", "beta", "gamma")

    def _grid_correct(self, X, target, sweep):
        """Correct predictions per (alpha, beta, gamma): one exp per beta and chunk.

        gamma only rescales the values (one weighted class sum per (beta, gamma)),
        alpha only weights the (chunk, n_classes) cache logits.
        """
        X = validate_queries(self, X)
        weights = {}
        correct = np.zeros(len(sweep), dtype=np.int64)
        for rows in iter_batches(X.shape[0], self.batch_size):
            chunk = X[rows]
            shifted = l2_normalize(chunk[:, self.selected_features_]) @ self.cache_keys_.T
            shifted -= 1.0
            text = self._text_logits(chunk)
            for beta, by_beta in sweep_groups(sweep, "beta", self.beta):
                affinity = np.exp(shifted * beta)
                by_gamma = sweep_groups([sweep[i] for i in by_beta], "gamma", self.gamma)
                for gamma, positions in by_gamma:
                    if gamma not in weights:
                        weights[gamma] = np.exp(gamma * self._divergence).astype(np.float32)
                    cache = class_sums(affinity * weights[gamma], self._class_starts)
                    for i in (by_beta[p] for p in positions):
                        scores = text + sweep[i].get("alpha", self.alpha) * cache
                        correct[i] += count_correct(scores.astype(np.float32), target[rows])
        return correct

    def _scores(self, X):
        X = validate_queries(self, X)

        def score_chunk(chunk):
            reduced = l2_normalize(chunk[:, self.selected_features_])
            cache = cache_logits(
                reduced, self.cache_keys_, self._class_starts, self.beta, self.value_weights_
            )
            return self._text_logits(chunk) + self.alpha * cache

        return chunked_scores(score_chunk, X, len(self.classes_), self.batch_size)


def _own_class_probability(keys, text, key_classes):
    """softmax(keys textᵀ)[j, y_j], with one (n_support, n_classes) buffer."""
    logits = keys @ text.T.astype(keys.dtype)
    own = logits[np.arange(len(keys)), key_classes].astype(np.float64)
    top = logits.max(axis=1)
    logits -= top[:, None]
    total = np.exp(logits, out=logits).sum(axis=1, dtype=np.float64)
    return np.exp(own - top) / total


def _selection_criterion(keys, text, starts, variance_weight):
    """−(1 − λ) · inter-class similarity + λ · text variance, per feature.

    The reference sums u_k v_k over all cross-class pairs with four nested loops;
    with s_c the per-class sum of the rows (text + support) that sum is
    (Σ_c s_c)² − Σ_c s_c², over Σ_{c≠c'} M_c M_c' pairs (M_c rows in class c).
    """
    sums = class_sums(keys.T, starts).T + text  # (C, d)
    counts = np.diff(np.append(starts, len(keys))) + 1.0
    n_pairs = counts.sum() ** 2 - (counts**2).sum()
    similarity = (sums.sum(axis=0) ** 2 - (sums**2).sum(axis=0)) / n_pairs
    variance = text.var(axis=0, ddof=1)
    return -(1.0 - variance_weight) * similarity + variance_weight * variance
