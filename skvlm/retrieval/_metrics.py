"""The retrieval metrics: AP per query, mAP, MAP@R, R-precision and recall@k.

Each ranks the whole gallery by cosine similarity for every query (see
:mod:`skvlm.retrieval` for the tie rule, the memory bound and the treatment of queries
without a relevant item) and is validated by scikit-learn's ``validate_params``, so a bad
argument raises ``InvalidParameterError`` (a ``ValueError`` and a ``TypeError``) that
names it, as ``sklearn.metrics`` does.
"""

from numbers import Integral

import numpy as np

from .._sklearn import Interval, validate_params
from ._ranking import (
    ap_at_r_of_ranks,
    ap_of_ranks,
    mean_over_defined,
    per_query,
    r_precision_of_ranks,
)

_RANKING_CONSTRAINTS = {
    "queries": ["array-like"],
    "query_labels": ["array-like"],
    "gallery": ["array-like"],
    "gallery_labels": ["array-like"],
    "exclude_self": ["boolean"],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
}


@validate_params(_RANKING_CONSTRAINTS, prefer_skip_nested_validation=True)
def average_precision_per_query(
    queries, query_labels, gallery, gallery_labels, *, exclude_self=False, batch_size=512
):
    """Average precision of each query over its full-gallery cosine ranking.

    AP = (1/R) sum_k k / rank_k, where rank_k is the rank of the k-th relevant item
    and R the number of relevant items: the mean over relevant items of the
    precision at their rank. Ties are broken by gallery order (earlier first).

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        Query embeddings. They need not be normalised; ranking uses cosine similarity.
    query_labels : array-like of shape (n_queries,)
        Label of each query.
    gallery : array-like of shape (n_gallery, n_features)
        Gallery embeddings (of either modality: cross-modal retrieval is the same call).
    gallery_labels : array-like of shape (n_gallery,)
        Label of each gallery item; an item is relevant to a query with the same label.
    exclude_self : bool, default=False
        Query ``i`` is gallery item ``i`` and is removed from its own ranking (the
        queries and the gallery must then have the same number of rows).
    batch_size : int, default=512
        Number of queries scored at once; memory is about ``4 * batch_size * n_gallery``
        bytes for the scores plus ``4 * n_gallery * n_features`` for the gallery's
        unit rows (about 0.8 GB for 200,000 x 512 at the default).

    Returns
    -------
    ap : ndarray of shape (n_queries,)
        Values in [0, 1] (float64); NaN for a query with no relevant item.

    See Also
    --------
    mean_average_precision : The mean of these values over the defined queries.

    Examples
    --------
    >>> import numpy as np
    >>> gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> average_precision_per_query([[1.0, 0.1]], [1], gallery, [0, 1, 1])
    array([0.58333333])
    """
    return per_query(
        ap_of_ranks, queries, query_labels, gallery, gallery_labels, exclude_self, batch_size
    )


@validate_params(_RANKING_CONSTRAINTS, prefer_skip_nested_validation=True)
def mean_average_precision(
    queries, query_labels, gallery, gallery_labels, *, exclude_self=False, batch_size=512
):
    """Mean over queries of the average precision of the full-gallery ranking (mAP).

    Queries with no relevant item are excluded from the mean, with an
    ``UndefinedMetricWarning`` that counts them.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        Query embeddings. They need not be normalised; ranking uses cosine similarity.
    query_labels : array-like of shape (n_queries,)
        Label of each query.
    gallery : array-like of shape (n_gallery, n_features)
        Gallery embeddings (of either modality: cross-modal retrieval is the same call).
    gallery_labels : array-like of shape (n_gallery,)
        Label of each gallery item; an item is relevant to a query with the same label.
    exclude_self : bool, default=False
        Query ``i`` is gallery item ``i`` and is removed from its own ranking (the
        queries and the gallery must then have the same number of rows).
    batch_size : int, default=512
        Number of queries scored at once; memory is about ``4 * batch_size * n_gallery``
        bytes for the scores plus ``4 * n_gallery * n_features`` for the gallery's
        unit rows (about 0.8 GB for 200,000 x 512 at the default).

    Returns
    -------
    map : float
        In [0, 1]; NaN when no query has a relevant item.

    See Also
    --------
    average_precision_per_query : The value of each query.
    Retriever.score : This metric for a fitted gallery.

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
    ap = per_query(
        ap_of_ranks, queries, query_labels, gallery, gallery_labels, exclude_self, batch_size
    )
    return mean_over_defined(ap)


@validate_params(_RANKING_CONSTRAINTS, prefer_skip_nested_validation=True)
def map_at_r(queries, query_labels, gallery, gallery_labels, *, exclude_self=False, batch_size=512):
    """Mean average precision at R, R being each query's number of relevant items.

    MAP@R = (1/R) sum over the relevant items ranked within the top R of
    k / rank_k (Musgrave et al. 2020). Cross the Gap reports it as ``mAP_at_R``;
    with ``exclude_self`` their code takes R before removing the query itself, so
    it looks at one position more than this definition does.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        Query embeddings. They need not be normalised; ranking uses cosine similarity.
    query_labels : array-like of shape (n_queries,)
        Label of each query.
    gallery : array-like of shape (n_gallery, n_features)
        Gallery embeddings (of either modality: cross-modal retrieval is the same call).
    gallery_labels : array-like of shape (n_gallery,)
        Label of each gallery item; an item is relevant to a query with the same label.
    exclude_self : bool, default=False
        Query ``i`` is gallery item ``i`` and is removed from its own ranking (the
        queries and the gallery must then have the same number of rows).
    batch_size : int, default=512
        Number of queries scored at once; memory is about ``4 * batch_size * n_gallery``
        bytes for the scores plus ``4 * n_gallery * n_features`` for the gallery's
        unit rows (about 0.8 GB for 200,000 x 512 at the default).

    Returns
    -------
    map_at_r : float
        In [0, 1]; NaN when no query has a relevant item.

    References
    ----------
    Musgrave, Belongie, Lim. "A Metric Learning Reality Check", ECCV 2020.

    Examples
    --------
    >>> import numpy as np
    >>> gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> map_at_r([[1.0, 0.1]], [1], gallery, [0, 1, 1])
    0.25
    """
    values = per_query(
        ap_at_r_of_ranks,
        queries,
        query_labels,
        gallery,
        gallery_labels,
        exclude_self,
        batch_size,
    )
    return mean_over_defined(values)


@validate_params(_RANKING_CONSTRAINTS, prefer_skip_nested_validation=True)
def r_precision(
    queries, query_labels, gallery, gallery_labels, *, exclude_self=False, batch_size=512
):
    """Mean precision among the top R results, R being each query's number of relevant items.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        Query embeddings. They need not be normalised; ranking uses cosine similarity.
    query_labels : array-like of shape (n_queries,)
        Label of each query.
    gallery : array-like of shape (n_gallery, n_features)
        Gallery embeddings (of either modality: cross-modal retrieval is the same call).
    gallery_labels : array-like of shape (n_gallery,)
        Label of each gallery item; an item is relevant to a query with the same label.
    exclude_self : bool, default=False
        Query ``i`` is gallery item ``i`` and is removed from its own ranking (the
        queries and the gallery must then have the same number of rows).
    batch_size : int, default=512
        Number of queries scored at once; memory is about ``4 * batch_size * n_gallery``
        bytes for the scores plus ``4 * n_gallery * n_features`` for the gallery's
        unit rows (about 0.8 GB for 200,000 x 512 at the default).

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
    values = per_query(
        r_precision_of_ranks,
        queries,
        query_labels,
        gallery,
        gallery_labels,
        exclude_self,
        batch_size,
    )
    return mean_over_defined(values)


@validate_params(
    {**_RANKING_CONSTRAINTS, "k": [Interval(Integral, 1, None, closed="left"), "array-like"]},
    prefer_skip_nested_validation=True,
)
def recall_at_k(
    queries, query_labels, gallery, gallery_labels, *, k=1, exclude_self=False, batch_size=512
):
    """Fraction of queries with at least one relevant item among their top ``k``.

    This is CLIP_benchmark's ``image_retrieval_recall@k`` / ``text_retrieval_recall@k``
    when the labels identify the matching pairs (e.g. label = image id for captions).

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        Query embeddings. They need not be normalised; ranking uses cosine similarity.
    query_labels : array-like of shape (n_queries,)
        Label of each query.
    gallery : array-like of shape (n_gallery, n_features)
        Gallery embeddings (of either modality: cross-modal retrieval is the same call).
    gallery_labels : array-like of shape (n_gallery,)
        Label of each gallery item; an item is relevant to a query with the same label.
    k : int or array-like of int, default=1
        Cut-off(s), each a positive integer.
    exclude_self : bool, default=False
        Query ``i`` is gallery item ``i`` and is removed from its own ranking (the
        queries and the gallery must then have the same number of rows).
    batch_size : int, default=512
        Number of queries scored at once; memory is about ``4 * batch_size * n_gallery``
        bytes for the scores plus ``4 * n_gallery * n_features`` for the gallery's
        unit rows (about 0.8 GB for 200,000 x 512 at the default).

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
    cutoffs = [k] if isinstance(k, Integral) else list(k)
    for cutoff in cutoffs:
        if isinstance(cutoff, bool) or not isinstance(cutoff, Integral) or cutoff < 1:
            raise ValueError(
                f"k must be a positive integer or a list of them, got {cutoff} in k={k!r}."
            )
    best = per_query(
        np.min, queries, query_labels, gallery, gallery_labels, exclude_self, batch_size
    )
    defined = ~np.isnan(best)
    recalls = {}
    for cutoff in cutoffs:
        hits = np.where(defined, best <= cutoff, np.nan)
        recalls[int(cutoff)] = mean_over_defined(hits)
    return recalls[int(k)] if isinstance(k, Integral) else recalls


METRICS = {
    "mAP": mean_average_precision,
    "mAP_at_R": map_at_r,
    "R_precision": r_precision,
    "recall_at_k": recall_at_k,
}
