"""Cache-model math shared by Tip-Adapter, Tip-X and APE (numpy only).

The "cache" of Tip-Adapter is the support set: keys F (unit rows) and one-hot values
L. Keys are stored sorted by class, so ``A @ L`` (a sum of affinity columns per
class) is a segmented sum, ``np.add.reduceat``, instead of a product with a dense
(n_support, n_classes) one-hot matrix. Queries go through in chunks of
``batch_size`` rows, so no (n_queries, n_support) matrix is ever held at once.
"""

import numpy as np

from .._math import iter_batches


def sort_by_class(X, y_idx, n_classes):
    """Rows sorted by class (stable), their class indices and each class's first row."""
    order = np.argsort(y_idx, kind="stable")
    counts = np.bincount(y_idx, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
    return X[order], y_idx[order], starts


def class_sums(M, starts):
    """``M @ L`` for one-hot L of class-sorted rows: per-class sums of M's columns."""
    return np.add.reduceat(M, starts, axis=1)


def cache_affinity(Q, keys, beta):
    """Tip-Adapter's affinity exp(-beta (1 - Q Fᵀ)), computed in place."""
    affinity = Q @ keys.T
    affinity -= 1.0
    affinity *= beta
    return np.exp(affinity, out=affinity)


def cache_logits(Q, keys, starts, beta, value_weights=None):
    """exp(-beta (1 - Q Fᵀ)) (w ⊙ L): Tip-Adapter's (and APE's) cache logits of one chunk."""
    affinity = cache_affinity(Q, keys, beta)
    if value_weights is not None:
        affinity *= value_weights
    return class_sums(affinity, starts)


def chunked_scores(score_chunk, X, n_classes, batch_size):
    """Apply ``score_chunk`` to row chunks of X and stack the (chunk, n_classes) results."""
    out = np.empty((X.shape[0], n_classes), dtype=np.float32)
    for rows in iter_batches(X.shape[0], batch_size):
        out[rows] = score_chunk(X[rows])
    return out
