"""NearestPrototype: cosine similarity to L2-normalised class means."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .._math import class_means, l2_normalize
from .._sklearn import StrOptions, _fit_context
from ._base import _ScoreClassifierMixin, validate_queries, validate_support


class NearestPrototype(_ScoreClassifierMixin, ClassifierMixin, BaseEstimator):
    """Classify by cosine similarity to each class prototype.

    The prototype of a class is the L2-normalised mean of its L2-normalised rows,
    the "Prototype" classifier of seed 002 (Table 2) and of the few-shot literature
    (Snell et al., 2017, with cosine instead of Euclidean distance).

    Parameters
    ----------
    metric : {"cosine"}, default="cosine"
        The similarity; scores are cosines in [-1, 1].
    normalize : bool, default=True
        L2-normalise the training rows before averaging them. ``False`` averages the
        rows as given, as seed 002's code does after PCA← (its projected rows are
        not unit vectors and are not re-normalised); the scores stay cosines.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    prototypes_ : ndarray of shape (n_classes, n_features)
        Unit-norm class prototypes, row order = ``classes_``.
    n_features_in_ : int

    References
    ----------
    Herzog & Wang (2026), "Reevaluating the intra-modal misalignment hypothesis in
    CLIP", Sec. 4 (image-only few-shot classification with prototypes).

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import NearestPrototype
    >>> X = np.array([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 0.8]])
    >>> clf = NearestPrototype().fit(X, ["cat", "cat", "dog", "dog"])
    >>> clf.predict([[0.7, 0.2], [0.2, 0.9]]).tolist()
    ['cat', 'dog']
    >>> clf.decision_function([[1.0, 1.0]]).round(3)  # 2 classes: cos(dog) - cos(cat)
    array([0.008], dtype=float32)
    """

    _parameter_constraints = {"metric": [StrOptions({"cosine"})], "normalize": ["boolean"]}

    def __init__(self, metric="cosine", *, normalize=True):
        self.metric = metric
        self.normalize = normalize

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Compute the class prototypes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings (normalised here, whatever their norm, unless ``normalize=False``).
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y_idx = validate_support(self, X, y, normalize=self.normalize)
        prototypes = l2_normalize(class_means(X, y_idx, len(self.classes_)))
        self.prototypes_ = prototypes.astype(np.float32)
        return self

    @classmethod
    def _search_grids(cls, search, dataset):
        return {}  # nothing to tune

    def _scores(self, X):
        X = validate_queries(self, X)
        return X @ self.prototypes_.T
