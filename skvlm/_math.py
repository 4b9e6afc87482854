"""Shared numeric helpers (numpy only; no torch at import time).

Every formula that more than one estimator needs lives here exactly once.
"""

import numpy as np


def l2_normalize(X, axis=-1):
    """Rows scaled to unit L2 norm, whatever their magnitude.

    An all-zero row has no direction: it stays zero (its cosine with anything is 0),
    as in :func:`sklearn.preprocessing.normalize`. Every other row comes out with unit
    norm, including rows of subnormal or near-overflow entries.
    """
    X = np.asarray(X)
    if X.dtype.kind not in "fc":
        X = X.astype(np.float64)
    # Squaring overflows above ~1e154 (float64) / ~1e19 (float32) and underflows to 0
    # below the square roots of the smallest normals, so the plain norm turns huge rows
    # into zeros and tiny ones into not-unit rows. Dividing by the row's largest |x|
    # first puts every squared entry in [0, 1] and the sum of squares in [1, d].
    # max(max, -min) and einsum avoid full-size temporaries: the output is the only
    # array as large as X (a 200,000-row gallery stays one copy).
    scale = np.maximum(X.max(axis=axis, keepdims=True), -X.min(axis=axis, keepdims=True))
    scale[scale == 0] = 1  # zero rows: 0 / 1 keeps them zero without a 0 / 0
    unit = X / scale
    if X.ndim == 2 and axis in (-1, 1):
        squares = np.einsum("ij,ij->i", unit, unit)[:, None]
    else:
        squares = np.sum(np.square(unit), axis=axis, keepdims=True)
    norms = np.sqrt(squares)
    norms[norms == 0] = 1
    unit /= norms
    return unit


def class_means(X, y_idx, n_classes=None):
    """Mean row of each class; ``y_idx`` holds integer class indices 0..C-1."""
    y_idx = np.asarray(y_idx)
    n_classes = int(y_idx.max()) + 1 if n_classes is None else n_classes
    sums = np.zeros((n_classes, X.shape[1]), dtype=np.result_type(X.dtype, np.float32))
    np.add.at(sums, y_idx, X)
    counts = np.bincount(y_idx, minlength=n_classes).astype(sums.dtype)
    return sums / np.maximum(counts, 1)[:, None]


def softmax(scores, axis=-1):
    """Numerically stable softmax along ``axis``."""
    shifted = scores - np.max(scores, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def log_softmax(scores, axis=-1):
    """Numerically stable log-softmax along ``axis``."""
    shifted = scores - np.max(scores, axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def numerical_rank(singular_values, shape, dtype=np.float64):
    """Number of singular values above ``numpy.linalg.matrix_rank``'s tolerance.

    The tolerance is ``max(singular_values) * max(shape) * eps``, with ``eps`` the
    machine precision of ``dtype`` (the precision the matrix was given in; float64
    for non-float dtypes). ``shape`` is the shape of the decomposed matrix.
    """
    dtype = np.dtype(dtype)
    eps = np.finfo(dtype if dtype.kind == "f" else np.float64).eps
    singular_values = np.asarray(singular_values)
    tol = singular_values.max(initial=0.0) * max(shape) * eps
    return int(np.count_nonzero(singular_values > tol))


def iter_batches(n, batch_size):
    """Yield ``slice`` objects covering ``range(n)`` in chunks of ``batch_size``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
