"""``Retriever``, a labelled gallery as an estimator, and ``retrieval_scorer``."""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._math import iter_batches
from .._sklearn import Interval, StrOptions, _DocLinkMixin, _fit_context, validate_params
from ._metrics import METRICS, mean_average_precision
from ._ranking import FLOAT_DTYPES, unit_float32


class Retriever(_DocLinkMixin, ClassifierMixin, BaseEstimator):
    """A labelled gallery searched by cosine similarity.

    ``fit`` stores the gallery, ``kneighbors`` returns the nearest gallery items,
    ``predict`` the majority label of the ``n_neighbors`` nearest, and ``score`` the
    mean average precision of the given queries against the gallery, so that a
    ``GridSearchCV`` over a retrieval pipeline maximises mAP.

    Parameters
    ----------
    metric : {"cosine"}, default="cosine"
        Similarity used for ranking.
    n_neighbors : int, default=5
        Neighbours returned by ``kneighbors`` and voting in ``predict`` (at most the
        gallery size).
    batch_size : int, default=512
        Queries scored at once.

    Attributes
    ----------
    gallery_ : ndarray of shape (n_gallery, n_features)
        L2-normalised float32 gallery.
    gallery_labels_ : ndarray of shape (n_gallery,) or None
        Labels given to ``fit``.
    classes_ : ndarray of shape (n_classes,)
        Sorted distinct labels (absent when fitted without labels).
    n_features_in_ : int
        Number of features seen in ``fit``.

    See Also
    --------
    mean_average_precision : The metric ``score`` returns.
    retrieval_scorer : Other retrieval metrics as ``GridSearchCV`` scorers.

    Examples
    --------
    >>> import numpy as np
    >>> gallery = np.array([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.2, 0.9]])
    >>> ret = Retriever(n_neighbors=1).fit(gallery, ["a", "a", "b", "b"])
    >>> ret.predict([[1.0, 0.1], [0.1, 1.0]]).tolist()
    ['a', 'b']
    >>> ret.score([[1.0, 0.1]], ["a"])
    1.0
    """

    _parameter_constraints = {
        "metric": [StrOptions({"cosine"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, metric="cosine", *, n_neighbors=5, batch_size=512):
        self.metric = metric
        self.n_neighbors = n_neighbors
        self.batch_size = batch_size

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Store the gallery ``X`` (and its labels ``y``).

        Parameters
        ----------
        X : array-like of shape (n_gallery, n_features)
            Gallery embeddings.
        y : array-like of shape (n_gallery,), default=None
            Gallery labels, needed by ``predict`` and ``score``.

        Returns
        -------
        self : Retriever
            The fitted retriever.
        """
        if y is None:
            X = validate_data(self, X, dtype=FLOAT_DTYPES)
            self.gallery_labels_ = None
        else:
            X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
            check_classification_targets(y)
            self.classes_ = np.unique(y)
            self.gallery_labels_ = y
        self.gallery_ = unit_float32(X)
        return self

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """Nearest gallery items of each query, best first (ties: gallery order).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Queries; ``None`` queries the gallery itself, each item excluded from
            its own neighbours (as in scikit-learn).
        n_neighbors : int, default=None
            Defaults to the ``n_neighbors`` parameter.
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors)
            Cosine distances ``1 - cos`` (float32); only if ``return_distance``.
        indices : ndarray of shape (n_queries, n_neighbors)
            Gallery indices of the neighbours, nearest first.
        """
        check_is_fitted(self)
        exclude_self = X is None
        queries = self.gallery_ if exclude_self else self._validate_queries(X)
        n_available = self.gallery_.shape[0] - int(exclude_self)
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if not isinstance(k, Integral) or k < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {k!r}.")
        if n_available < 1:
            raise ValueError("The gallery has a single item; it has no neighbour but itself.")
        k = min(k, n_available)
        distances = np.empty((queries.shape[0], k), dtype=np.float32)
        indices = np.empty((queries.shape[0], k), dtype=np.intp)
        for batch in iter_batches(queries.shape[0], self.batch_size):
            scores = queries[batch] @ self.gallery_.T
            if exclude_self:
                scores[np.arange(scores.shape[0]), np.arange(batch.start, batch.stop)] = -np.inf
            for row in range(scores.shape[0]):
                top = _top_k(scores[row], k)
                indices[batch.start + row] = top
                distances[batch.start + row] = 1.0 - scores[row, top]
        return (distances, indices) if return_distance else indices

    def predict(self, X):
        """Majority label among the ``n_neighbors`` nearest gallery items.

        A tie between labels goes to the label of the nearest item among them.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query embeddings.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,)
            Predicted labels.
        """
        self._check_labelled()
        indices = self.kneighbors(X, return_distance=False)
        codes = np.searchsorted(self.classes_, self.gallery_labels_)[indices]
        n_classes = self.classes_.shape[0]
        votes = np.zeros((codes.shape[0], n_classes))
        rows = np.repeat(np.arange(codes.shape[0]), codes.shape[1])
        # Later neighbours weigh a hair less, so a tie goes to the nearer neighbour's label.
        weights = 1.0 - np.tile(np.arange(codes.shape[1]), codes.shape[0]) * 1e-6
        np.add.at(votes, (rows, codes.ravel()), weights)
        return self.classes_[np.argmax(votes, axis=1)]

    def score(self, X, y, sample_weight=None):
        """Mean average precision of the queries ``X`` (labels ``y``) against the gallery.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query embeddings.
        y : array-like of shape (n_queries,)
            Query labels.
        sample_weight : None
            Not supported (must be None).

        Returns
        -------
        score : float
            :func:`mean_average_precision` of the queries.
        """
        if sample_weight is not None:
            raise ValueError("Retriever.score does not support sample_weight.")
        self._check_labelled()
        queries = self._validate_queries(X)
        return mean_average_precision(
            queries, y, self.gallery_, self.gallery_labels_, batch_size=self.batch_size
        )

    def _validate_queries(self, X):
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        return unit_float32(X)

    def _check_labelled(self):
        check_is_fitted(self)
        if self.gallery_labels_ is None:
            raise ValueError("This Retriever was fitted without labels; pass y to fit.")


def _top_k(scores, k):
    """Indices of the k highest scores, ordered by (-score, index)."""
    if k < scores.shape[0]:
        threshold = np.partition(scores, scores.shape[0] - k)[scores.shape[0] - k]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(scores.shape[0])
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


@validate_params(
    {
        "metric": [StrOptions(set(METRICS))],
        "k": [Interval(Integral, 1, None, closed="left")],
        "exclude_self": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def retrieval_scorer(metric="mAP", *, k=1, exclude_self=False):
    """A scorer for ``GridSearchCV(scoring=...)`` that evaluates retrieval.

    The scorer takes a fitted :class:`Retriever`, or a ``Pipeline`` ending in one,
    transforms the held-out rows through the pipeline's earlier steps and scores
    them as queries against the fitted gallery.

    Parameters
    ----------
    metric : {"mAP", "mAP_at_R", "R_precision", "recall_at_k"}, default="mAP"
        Names as in Cross the Gap's tables.
    k : int, default=1
        Cut-off for ``"recall_at_k"``.
    exclude_self : bool, default=False
        Passed to the metric (only meaningful when queries are the gallery rows).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, greater is better.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.2, 0.9]])
    >>> ret = Retriever().fit(X, [0, 0, 1, 1])
    >>> retrieval_scorer("recall_at_k", k=1)(ret, [[1.0, 0.1]], [0])
    1.0
    """
    function = METRICS[metric]
    extra = {"k": k} if metric == "recall_at_k" else {}

    def scorer(estimator, X, y):
        retriever = estimator
        if hasattr(estimator, "steps"):
            retriever = estimator.steps[-1][1]
            if len(estimator.steps) > 1:
                X = estimator[:-1].transform(X)
        if not isinstance(retriever, Retriever):
            raise ValueError(
                "retrieval_scorer needs a Retriever or a Pipeline ending in one, "
                f"got {type(retriever).__name__}."
            )
        retriever._check_labelled()
        queries = retriever._validate_queries(X)
        return function(
            queries,
            y,
            retriever.gallery_,
            retriever.gallery_labels_,
            exclude_self=exclude_self,
            batch_size=retriever.batch_size,
            **extra,
        )

    scorer.__name__ = f"retrieval_scorer_{metric}"
    return scorer
