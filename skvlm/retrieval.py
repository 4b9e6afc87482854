"""Retrieval metrics and a retrieval estimator (numpy only).

Every metric ranks the whole gallery by cosine similarity for each query and
calls a gallery item *relevant* when its label equals the query's label. The
queries are processed ``batch_size`` at a time, so memory grows with
``batch_size * n_gallery`` (plus one unit-row float32 copy of the gallery), never with
``n_queries * n_gallery``.

Tie rule: gallery items with exactly equal (float32) cosine similarity are ranked
by their position in the gallery, the earlier item first. This is the order of a
stable sort of the negated scores, so results are deterministic; libraries that
use an unstable sort (``torch.topk``) or that average over tied groups
(``sklearn.metrics.average_precision_score``) can differ from ours only on tied
scores.

Queries with no relevant item in the gallery (a label absent from the gallery)
have an undefined average precision: the per-query functions return NaN for
them, and the mean metrics exclude them with an ``UndefinedMetricWarning`` that
counts them. Cross the Gap's reference code counts such queries as 0 instead;
the two agree whenever every query has a relevant item.
"""

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils import check_array, column_or_1d
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._math import iter_batches, l2_normalize
from ._sklearn import Interval, StrOptions, _fit_context

__all__ = [
    "Retriever",
    "average_precision_per_query",
    "map_at_r",
    "mean_average_precision",
    "r_precision",
    "recall_at_k",
    "retrieval_scorer",
]


# --------------------------------------------------------------------------- ranks

_FLOAT_DTYPES = [np.float32, np.float64]


def _unit_float32(X):
    """Unit rows as float32, normalised before the cast.

    Cosine ranking ignores each row's norm, so float64 rows beyond float32's range
    (1e300, 1e-310) are valid input: cast first, they would become inf or 0. Unit
    float32 rows also keep the score matrix product from overflowing.
    """
    return l2_normalize(X).astype(np.float32, copy=False)


def _check_retrieval_inputs(queries, query_labels, gallery, gallery_labels, exclude_self):
    gallery = check_array(gallery, dtype=_FLOAT_DTYPES, ensure_min_samples=0, input_name="gallery")
    if gallery.shape[0] == 0:
        raise ValueError("The gallery is empty: at least one gallery item is needed to rank.")
    queries = check_array(queries, dtype=_FLOAT_DTYPES, input_name="queries")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries have {queries.shape[1]} features but the gallery has "
            f"{gallery.shape[1]}; both must be embeddings of the same width."
        )
    query_labels = column_or_1d(query_labels)
    gallery_labels = column_or_1d(gallery_labels)
    for name, labels, rows in (
        ("query_labels", query_labels, queries),
        ("gallery_labels", gallery_labels, gallery),
    ):
        if labels.shape[0] != rows.shape[0]:
            raise ValueError(f"{name} has {labels.shape[0]} entries for {rows.shape[0]} rows.")
    if exclude_self and queries.shape[0] != gallery.shape[0]:
        raise ValueError(
            "exclude_self=True needs query i to be gallery item i, but there are "
            f"{queries.shape[0]} queries and {gallery.shape[0]} gallery items."
        )
    _, codes = np.unique(np.concatenate([query_labels, gallery_labels]), return_inverse=True)
    codes = codes.ravel()
    return (
        _unit_float32(queries), codes[: queries.shape[0]],
        _unit_float32(gallery), codes[queries.shape[0] :],
    )


def _ranks_in_row(scores, relevant, self_index):
    """1-based ranks (ascending) of the relevant items in one row of scores.

    A full argsort of the row costs O(G log G); we only need the ranks of the
    relevant items. Items scoring below every relevant item cannot precede one,
    so when they are the majority they are dropped first. The rest are bucketed
    monotonically (higher score, lower bucket), a cumulative histogram counts the
    items in strictly better buckets, and only the items that share a bucket with
    a relevant item (or with the excluded query itself) are ordered exactly, by
    (-score, gallery index).
    """
    lowest = scores[relevant].min()
    n_band = np.count_nonzero(scores >= lowest)
    if n_band < scores.shape[0] // 2:
        index = np.flatnonzero(scores >= lowest)
        if self_index is not None and scores[self_index] < lowest:
            self_index = None  # ranked below every relevant item: changes nothing
        # Relevant items and the query, as positions in the band.
        relevant = np.searchsorted(index, relevant)
        if self_index is not None:
            self_index = int(np.searchsorted(index, self_index))
        scores = scores[index]
    n_buckets = max(scores.shape[0] // 4, 1)
    top, bottom = scores.max(), scores.min()
    span = float(top) - float(bottom)
    scale = np.float32((n_buckets - 1) / span) if span > 0 else np.float32(0.0)
    work = np.subtract(top, scores)
    work *= scale
    buckets = work.astype(np.intp)
    np.minimum(buckets, n_buckets - 1, out=buckets)
    counts = np.bincount(buckets, minlength=n_buckets)
    better = np.cumsum(counts) - counts

    marked = relevant if self_index is None else np.append(relevant, self_index)
    shared = np.zeros(n_buckets, dtype=bool)
    shared[buckets[marked]] = True
    candidates = np.flatnonzero(shared[buckets])
    # Positions in the band preserve gallery order, so they break ties correctly.
    candidates = candidates[np.lexsort((candidates, -scores[candidates]))]
    cand_buckets = buckets[candidates]
    first_in_bucket = np.searchsorted(cand_buckets, cand_buckets, side="left")
    ranks = better[cand_buckets] + np.arange(candidates.shape[0]) - first_in_bucket + 1

    by_index = np.argsort(candidates)
    is_relevant = np.zeros(candidates.shape[0], dtype=bool)
    is_relevant[by_index[np.searchsorted(candidates, relevant, sorter=by_index)]] = True
    relevant_ranks = ranks[is_relevant]
    if self_index is not None:
        self_rank = ranks[candidates == self_index][0]
        relevant_ranks = relevant_ranks - (relevant_ranks > self_rank)
    return np.sort(relevant_ranks)


def _iter_relevant_ranks(queries, query_codes, gallery, gallery_codes, exclude_self, batch_size):
    """Yield ``(query index, sorted 1-based ranks of its relevant items)``."""
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    order = np.argsort(gallery_codes, kind="stable")
    starts = np.searchsorted(gallery_codes[order], np.arange(query_codes.max(initial=0) + 2))
    # One buffer for all batches: the score block is the only large allocation.
    buffer = np.empty((min(batch_size, queries.shape[0]), gallery.shape[0]), dtype=np.float32)
    for batch in iter_batches(queries.shape[0], batch_size):
        scores = buffer[: batch.stop - batch.start]
        np.matmul(queries[batch], gallery.T, out=scores)  # both unit rows (checked above)
        for row, query in enumerate(range(batch.start, batch.stop)):
            code = query_codes[query]
            relevant = order[starts[code] : starts[code + 1]]  # ascending gallery indices
            if exclude_self:
                relevant = relevant[relevant != query]
            if relevant.shape[0] == 0:
                yield query, relevant
                continue
            yield query, _ranks_in_row(scores[row], relevant, query if exclude_self else None)


def _per_query(statistic, queries, query_labels, gallery, gallery_labels, exclude_self, batch_size):
    checked = _check_retrieval_inputs(queries, query_labels, gallery, gallery_labels, exclude_self)
    values = np.full(checked[0].shape[0], np.nan)
    for query, ranks in _iter_relevant_ranks(*checked, exclude_self, batch_size):
        if ranks.shape[0]:
            values[query] = statistic(ranks)
    return values


def _mean_over_defined(values):
    undefined = int(np.isnan(values).sum())
    if undefined:
        warnings.warn(
            f"{undefined} of {values.shape[0]} queries have no relevant item in the "
            "gallery (their label is absent from it); they are excluded from the mean.",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    if undefined == values.shape[0]:
        return float("nan")
    return float(np.nanmean(values))


def _average_precision(ranks):
    return np.mean(np.arange(1, ranks.shape[0] + 1) / ranks)


def _average_precision_at_r(ranks):
    n_relevant = ranks.shape[0]
    hits = ranks <= n_relevant
    return np.sum(np.arange(1, n_relevant + 1)[hits] / ranks[hits]) / n_relevant


def _r_precision(ranks):
    return np.count_nonzero(ranks <= ranks.shape[0]) / ranks.shape[0]


# --------------------------------------------------------------------------- metrics

_SHARED_HEAD = """
    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        Query embeddings. They need not be normalised; ranking uses cosine similarity.
    query_labels : array-like of shape (n_queries,)
        Label of each query.
    gallery : array-like of shape (n_gallery, n_features)
        Gallery embeddings (of either modality: cross-modal retrieval is the same call).
    gallery_labels : array-like of shape (n_gallery,)
        Label of each gallery item; an item is relevant to a query with the same label."""

_SHARED_TAIL = """
    exclude_self : bool, default=False
        Query ``i`` is gallery item ``i`` and is removed from its own ranking (the
        queries and the gallery must then have the same number of rows).
    batch_size : int, default=512
        Number of queries scored at once; memory is about ``4 * batch_size * n_gallery``
        bytes for the scores plus ``4 * n_gallery * n_features`` for the gallery's
        unit rows (about 0.8 GB for 200,000 x 512 at the default).
"""

_SHARED_PARAMS = _SHARED_HEAD + _SHARED_TAIL


def average_precision_per_query(
    queries, query_labels, gallery, gallery_labels, exclude_self=False, batch_size=512
):
    """Average precision of each query over its full-gallery cosine ranking.

    AP = (1/R) sum_k k / rank_k, where rank_k is the rank of the k-th relevant item
    and R the number of relevant items: the mean over relevant items of the
    precision at their rank. Ties are broken by gallery order (earlier first).
    %s
    Returns
    -------
    ap : ndarray of shape (n_queries,)
        Values in [0, 1] (float64); NaN for a query with no relevant item.

    Examples
    --------
    >>> import numpy as np
    >>> gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> average_precision_per_query([[1.0, 0.1]], [1], gallery, [0, 1, 1])
    array([0.58333333])
    """
    return _per_query(
        _average_precision, queries, query_labels, gallery, gallery_labels, exclude_self, batch_size
    )


def mean_average_precision(
    queries, query_labels, gallery, gallery_labels, exclude_self=False, batch_size=512
):
    """Mean over queries of the average precision of the full-gallery ranking (mAP).

    Queries with no relevant item are excluded from the mean, with a warning.
    %s
    Returns
    -------
    map : float
        In [0, 1]; NaN when no query has a relevant item.

    References
    ----------
    Mistretta et al., "Cross the Gap", ICLR 2025 (the ``mAP`` of their retrieval tables).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> mean_average_precision(X, [0, 0, 1, 1], X, [0, 0, 1, 1], exclude_self=True)
    1.0
    """
    ap = average_precision_per_query(
        queries, query_labels, gallery, gallery_labels, exclude_self, batch_size
    )
    return _mean_over_defined(ap)


def map_at_r(queries, query_labels, gallery, gallery_labels, exclude_self=False, batch_size=512):
    """Mean average precision at R, R being each query's number of relevant items.

    MAP@R = (1/R) sum over the relevant items ranked within the top R of
    k / rank_k (Musgrave et al. 2020). Cross the Gap reports it as ``mAP_at_R``;
    with ``exclude_self`` their code takes R before removing the query itself, so
    it looks at one position more than this definition does.
    %s
    Returns
    -------
    map_at_r : float
        In [0, 1]; NaN when no query has a relevant item.

    Examples
    --------
    >>> import numpy as np
    >>> gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> map_at_r([[1.0, 0.1]], [1], gallery, [0, 1, 1])
    0.25
    """
    values = _per_query(
        _average_precision_at_r, queries, query_labels, gallery, gallery_labels, exclude_self,
        batch_size,
    )
    return _mean_over_defined(values)


def r_precision(queries, query_labels, gallery, gallery_labels, exclude_self=False, batch_size=512):
    """Mean precision among the top R results, R being each query's number of relevant items.
    %s
    Returns
    -------
    r_precision : float
        In [0, 1]; NaN when no query has a relevant item.

    Examples
    --------
    >>> import numpy as np
    >>> gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> r_precision([[1.0, 0.1]], [1], gallery, [0, 1, 1])
    0.5
    """
    values = _per_query(
        _r_precision, queries, query_labels, gallery, gallery_labels, exclude_self, batch_size
    )
    return _mean_over_defined(values)


def recall_at_k(
    queries, query_labels, gallery, gallery_labels, k=1, exclude_self=False, batch_size=512
):
    """Fraction of queries with at least one relevant item among their top ``k``.

    This is CLIP_benchmark's ``image_retrieval_recall@k`` / ``text_retrieval_recall@k``
    when the labels identify the matching pairs (e.g. label = image id for captions).
    %s
    k : int or sequence of int, default=1
        Cut-off(s).%s
    Returns
    -------
    recall : float or dict
        A float for one ``k``; ``{k: recall}`` for a sequence of cut-offs.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> captions = np.array([[0.1, 1.0], [1.0, 0.2], [0.9, 0.1]])
    >>> recall_at_k(images, [0, 1], captions, [0, 0, 1], k=[1, 2, 3])
    {1: 0.0, 2: 0.5, 3: 1.0}
    """
    cutoffs = [k] if isinstance(k, numbers.Integral) else list(k)
    for cutoff in cutoffs:
        if not isinstance(cutoff, numbers.Integral) or cutoff < 1:
            raise ValueError(f"k must be a positive integer (or a list of them), got {cutoff!r}.")
    best = _per_query(
        np.min, queries, query_labels, gallery, gallery_labels, exclude_self, batch_size
    )
    defined = ~np.isnan(best)
    recalls = {}
    for cutoff in cutoffs:
        hits = np.where(defined, best <= cutoff, np.nan)
        recalls[int(cutoff)] = _mean_over_defined(hits)
    return recalls[int(k)] if isinstance(k, numbers.Integral) else recalls


for _function in (average_precision_per_query, mean_average_precision, map_at_r, r_precision):
    _function.__doc__ = _function.__doc__ % _SHARED_PARAMS
recall_at_k.__doc__ = recall_at_k.__doc__ % (_SHARED_HEAD, _SHARED_TAIL)

_METRICS = {
    "mAP": mean_average_precision,
    "mAP_at_R": map_at_r,
    "R_precision": r_precision,
    "recall_at_k": recall_at_k,
}


# --------------------------------------------------------------------------- estimator


class Retriever(ClassifierMixin, BaseEstimator):
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
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, metric="cosine", n_neighbors=5, batch_size=512):
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
            X = validate_data(self, X, dtype=_FLOAT_DTYPES)
            self.gallery_labels_ = None
        else:
            X, y = validate_data(self, X, y, dtype=_FLOAT_DTYPES)
            check_classification_targets(y)
            self.classes_ = np.unique(y)
            self.gallery_labels_ = y
        self.gallery_ = _unit_float32(X)
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
        if not isinstance(k, numbers.Integral) or k < 1:
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
        X = validate_data(self, X, reset=False, dtype=_FLOAT_DTYPES)
        return _unit_float32(X)

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


# --------------------------------------------------------------------------- scorer


def retrieval_scorer(metric="mAP", k=1, exclude_self=False):
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
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}.")
    function = _METRICS[metric]
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
            queries, y, retriever.gallery_, retriever.gallery_labels_,
            exclude_self=exclude_self, batch_size=retriever.batch_size, **extra,
        )

    scorer.__name__ = f"retrieval_scorer_{metric}"
    return scorer
