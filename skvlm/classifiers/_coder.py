"""CODER (Yi et al., CVPR 2024): a Tip-Adapter cache on cross-modal neighbour representations."""

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_array

from .._math import iter_batches, l2_normalize
from .._sklearn import Interval, _fit_context
from ._base import BATCH_SIZE_CONSTRAINT, _ScoreClassifierMixin, validate_queries
from ._cache import chunked_scores, class_sums
from ._search import count_correct, reference_range, sweep_groups
from ._text_weights import TEXT_PARAMETER_CONSTRAINTS, prompt_embeddings
from ._tip import _NON_NEGATIVE, _CacheModelMixin

#: CODER's few-shot search (YCaigogogo/CVPR24-CODER 1501735 ``classify_few_shot.py:40-53``):
#: beta 500 values in [0.1, 200), alpha 50 in [0.1, 20), beta outside alpha. The
#: reference then searches twice more on [0.5, 1.5] x the best (``:50-68``), which a
#: fixed grid does not repeat.
CODER_REFERENCE_GRID = {
    "beta": reference_range(0.1, 200, 500),
    "alpha": reference_range(0.1, 20, 50),
}
#: A small CODER grid around the reference's starting values (its configs' init_beta
#: 30-72, init_alpha 1.7-2.6).
CODER_DEFAULT_GRID = {
    "beta": [5.0, 15.0, 30.0, 72.0, 120.0],
    "alpha": [0.5, 1.0, 1.66, 3.0, 6.0],
}


class CODERClassifier(_CacheModelMixin, _ScoreClassifierMixin, ClassifierMixin, BaseEstimator):
    """CODER: Tip-Adapter on cross-modal neighbour representations of the images.

    An image is represented by its cosines to a bank of texts B (m unit rows):
    φ(x) = normalise(x̂ Bᵀ), with x̂ the unit image embedding. The support rows'
    representations are the cache keys K. For a query x, with A = φ(x) Kᵀ and, per
    query, the min-max rescaled affinity Ã = (A − min A) / (max A − min A) / T:

    scores = ``100 · x̂ Wᵀ + alpha · exp(−beta (1 − Ã)) L``

    (W the text classifier, L the one-hot labels of the keys). A query whose
    affinities are all equal (one support row, say) gets Ã = 0: its cache term
    carries no information (the reference divides by zero there).

    Parameters
    ----------
    alpha : float, default=1.66
        Weight of the cache logits.
    beta : float, default=72.0
        Sharpness of the affinity. alpha, beta default to the reference's ImageNet
        ``init_alpha``/``init_beta``; it searches beta in [0.1, 200) and alpha in
        [0.1, 20) on validation data (``param_grid(CODERClassifier, "reference")``).
    temperature : float, default=1.0
        T, dividing the rescaled affinity (the reference's ``T``, 1 in its configs).
    text_bank : array-like of shape (m, n_features), callable or None, default=None
        The texts images are represented by (the reference's class names, attributes
        and analogous classes from an LLM). A callable ``f(classes, n_features)`` is
        called in ``fit``. None: every prompt of the text classifier (each template
        filled with each class name, and each class description) as its own row.
    class_names, templates, encoder, text_weights, descriptions
        The text classifier, as in :class:`ZeroShotClassifier`: required.
    batch_size : int, default=512
        Queries scored at a time: memory is bounded by ``batch_size × n_support``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    text_bank_ : ndarray of shape (m, n_features)
        Unit rows of the text bank.
    cache_keys_ : ndarray of shape (n_support, m)
        The support rows' CODER representations (unit rows), sorted by class.
    cache_classes_ : ndarray of shape (n_support,)
    text_weights_ : ndarray of shape (n_classes, n_features)
    n_features_in_ : int

    Notes
    -----
    The reference builds the keys from the mean of ``augment_epoch`` augmented views of
    each shot (``utils.py:157-183``), which ``CLIPEncoder(n_augmentations=...)`` gives;
    it reports the better of the test accuracies before and after its search
    (``classify_few_shot.py:89``), which chooses on test rows and is not done here.

    References
    ----------
    Yi, Ren, Zhan & Ye (2024), "Leveraging cross-modal neighbor representation for
    improved CLIP classification", CVPR; github.com/YCaigogogo/CVPR24-CODER
    ``CODER/CODER.py`` (``get_general_CODER``) and ``utils.py`` (``test_model``).

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import CODERClassifier
    >>> X = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    >>> bank = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> clf = CODERClassifier(text_weights=np.eye(2), text_bank=bank)
    >>> clf.fit(X, ["cat", "cat", "dog", "dog"]).predict([[0.8, 0.3], [0.2, 0.9]]).tolist()
    ['cat', 'dog']
    """

    _parameter_constraints = {
        "alpha": _NON_NEGATIVE,
        "beta": _NON_NEGATIVE,
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "text_bank": ["array-like", callable, None],
        **TEXT_PARAMETER_CONSTRAINTS,
        "batch_size": BATCH_SIZE_CONSTRAINT,
    }

    def __init__(
        self,
        alpha=1.66,
        *,
        beta=72.0,
        temperature=1.0,
        text_bank=None,
        class_names=None,
        templates="simple",
        encoder=None,
        text_weights=None,
        descriptions=None,
        batch_size=512,
    ):
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature
        self.text_bank = text_bank
        self.class_names = class_names
        self.templates = templates
        self.encoder = encoder
        self.text_weights = text_weights
        self.descriptions = descriptions
        self.batch_size = batch_size

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Build the text bank, the text classifier and the cache of representations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._fit_cache(X, y, require_text=True)
        bank = self._resolve_bank()
        self.text_bank_ = bank
        self.cache_keys_ = self._represent(self.cache_keys_)
        return self

    def _resolve_bank(self):
        bank = self.text_bank
        if bank is None:
            bank = prompt_embeddings(self, self.classes_)
        elif callable(bank):
            bank = bank(self.classes_, self.n_features_in_)
        bank = check_array(bank, dtype=[np.float64, np.float32], input_name="text_bank")
        if bank.shape[1] != self.n_features_in_:
            raise ValueError(
                f"CODERClassifier: the text bank has width {bank.shape[1]} but X has "
                f"{self.n_features_in_} features; texts and images must come from the "
                "same model."
            )
        return l2_normalize(bank.astype(np.float64)).astype(np.float32)

    def _represent(self, X):
        """φ(x) = normalise(x Bᵀ) of unit rows X (the cross-modal neighbour representation)."""
        return l2_normalize(X @ self.text_bank_.T.astype(X.dtype))

    def _rescaled_affinity(self, X):
        """Ã = per-row min-max of φ(X) Kᵀ, divided by T; constant rows give 0."""
        affinity = self._represent(X) @ self.cache_keys_.T
        low = affinity.min(axis=1, keepdims=True)
        span = affinity.max(axis=1, keepdims=True) - low
        affinity -= low
        np.divide(affinity, span, out=affinity, where=span > 0)  # constant rows stay 0
        affinity /= self.temperature
        return affinity

    def _scores(self, X):
        X = validate_queries(self, X)

        def score_chunk(chunk):
            affinity = self._rescaled_affinity(chunk)
            affinity -= 1.0
            affinity *= self.beta
            cache = class_sums(np.exp(affinity, out=affinity), self._class_starts)
            return self._text_logits(chunk) + self.alpha * cache

        return chunked_scores(score_chunk, X, len(self.classes_), self.batch_size)

    @classmethod
    def _search_grids(cls, search, dataset):
        return CODER_DEFAULT_GRID if search == "default" else CODER_REFERENCE_GRID

    _grid_params = ("alpha", "beta")

    def _grid_correct(self, X, target, sweep):
        """Correct predictions per (alpha, beta): the rescaled affinities once per chunk."""
        X = validate_queries(self, X)
        correct = np.zeros(len(sweep), dtype=np.int64)
        for rows in iter_batches(X.shape[0], self.batch_size):
            shifted = self._rescaled_affinity(X[rows])
            shifted -= 1.0
            text = self._text_logits(X[rows])
            for beta, indices in sweep_groups(sweep, "beta", self.beta):
                affinity = shifted * beta
                cache = class_sums(np.exp(affinity, out=affinity), self._class_starts)
                for i in indices:
                    scores = text + sweep[i].get("alpha", self.alpha) * cache
                    correct[i] += count_correct(scores.astype(np.float32), target[rows])
        return correct
