"""The ranking engine behind every retrieval metric (numpy only).

For each query the gallery is ranked by cosine similarity, ties by gallery order; only
the ranks of the relevant items (same label) are computed, ``batch_size`` queries at a
time. The per-query statistics of those ranks (AP, AP@R, R-precision) live here too.
"""

import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils import check_array, column_or_1d

from .._math import iter_batches, l2_normalize

FLOAT_DTYPES = [np.float32, np.float64]


def unit_float32(X):
    """Unit rows as float32, normalised before the cast.

    Cosine ranking ignores each row's norm, so float64 rows beyond float32's range
    (1e300, 1e-310) are valid input: cast first, they would become inf or 0. Unit
    float32 rows also keep the score matrix product from overflowing.
    """
    return l2_normalize(X).astype(np.float32, copy=False)


def check_retrieval_inputs(queries, query_labels, gallery, gallery_labels, exclude_self):
    """Unit float32 rows and integer label codes shared by queries and gallery.

    Errors name the argument: empty gallery, widths that differ, a label count that
    does not match its rows, ``exclude_self`` with queries that are not the gallery.
    """
    gallery = check_array(gallery, dtype=FLOAT_DTYPES, ensure_min_samples=0, input_name="gallery")
    if gallery.shape[0] == 0:
        raise ValueError("The gallery is empty: at least one gallery item is needed to rank.")
    queries = check_array(queries, dtype=FLOAT_DTYPES, input_name="queries")
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
        unit_float32(queries),
        codes[: queries.shape[0]],
        unit_float32(gallery),
        codes[queries.shape[0] :],
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
    """Yield ``(query index, sorted 1-based ranks of its relevant items)``.

    ``batch_size`` is a positive integer (the public entry points validate it).
    """
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


def per_query(statistic, queries, query_labels, gallery, gallery_labels, exclude_self, batch_size):
    """``statistic(ranks)`` of each query (float64), NaN where it has no relevant item."""
    checked = check_retrieval_inputs(queries, query_labels, gallery, gallery_labels, exclude_self)
    values = np.full(checked[0].shape[0], np.nan)
    for query, ranks in _iter_relevant_ranks(*checked, exclude_self, batch_size):
        if ranks.shape[0]:
            values[query] = statistic(ranks)
    return values


def mean_over_defined(values):
    """Mean of the defined (non-NaN) values; warns with the count of the undefined ones.

    The warning points at the caller of the public metric: this function, the metric
    and sklearn's ``validate_params`` wrapper sit between.
    """
    undefined = int(np.isnan(values).sum())
    if undefined:
        warnings.warn(
            f"{undefined} of {values.shape[0]} queries have no relevant item in the "
            "gallery (their label is absent from it); they are excluded from the mean.",
            UndefinedMetricWarning,
            stacklevel=4,
        )
    if undefined == values.shape[0]:
        return float("nan")
    return float(np.nanmean(values))


def ap_of_ranks(ranks):
    """AP from the sorted 1-based ranks of the relevant items: mean of k / rank_k."""
    return np.mean(np.arange(1, ranks.shape[0] + 1) / ranks)


def ap_at_r_of_ranks(ranks):
    """MAP@R of one query: (1/R) sum of k / rank_k over the hits within the top R."""
    n_relevant = ranks.shape[0]
    hits = ranks <= n_relevant
    return np.sum(np.arange(1, n_relevant + 1)[hits] / ranks[hits]) / n_relevant


def r_precision_of_ranks(ranks):
    """Fraction of the top R that is relevant, R the number of relevant items."""
    return np.count_nonzero(ranks <= ranks.shape[0]) / ranks.shape[0]
