"""Geometry diagnostics of a joint image-text embedding space (numpy only).

These are the indicators the intra-modal misalignment literature argues about: the
modality gap (distance between the image and text centroids), the alignment score of
matched pairs (AlignCLIP, Table 1), the cosine-similarity histograms by class and by
modality (seed 002, Fig. 2 and 5), and the recovery of image-image similarities from
image-text similarities alone (seed 002, Appendix A).

All functions take plain arrays of embeddings (one row per item) and never load a model.
Their arguments are checked by scikit-learn's ``validate_params``: a bad one raises
``InvalidParameterError`` (a ``ValueError`` and a ``TypeError``) that names it.
"""

from numbers import Integral

import numpy as np
from sklearn.utils import check_array

from ._math import l2_normalize, numerical_rank
from ._sklearn import Interval, validate_params

__all__ = [
    "alignment_score",
    "modality_gap",
    "recover_intra_similarity",
    "similarity_distributions",
]


def _check_embeddings(X, name, dtype=(np.float64, np.float32)):
    """2-D finite float array, at least one row; errors name the argument."""
    X = check_array(X, dtype=list(dtype), input_name=name, ensure_min_samples=1)
    return X


def _check_same_width(A, B, name_a, name_b):
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"{name_a} has {A.shape[1]} columns but {name_b} has {B.shape[1]}; "
            "both must come from the same embedding space."
        )


@validate_params(
    {"image_emb": ["array-like"], "text_emb": ["array-like"], "normalize": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def modality_gap(image_emb, text_emb, *, normalize=True):
    """Euclidean distance between the image centroid and the text centroid.

    The "modality gap" of Liang et al. (2022): with L2-normalised embeddings,
    ``|| mean(image_emb) - mean(text_emb) ||``. It is 0 when the two modalities share
    a centroid and at most 2. The two sets need not be paired or of equal size.

    Parameters
    ----------
    image_emb : array-like of shape (n_images, d)
        Image embeddings.
    text_emb : array-like of shape (n_texts, d)
        Text embeddings from the same model.
    normalize : bool, default=True
        L2-normalise every row first (the gap is defined on the unit sphere). Set to
        False for embeddings that were deliberately left unnormalised.

    Returns
    -------
    gap : float
        The distance between the two centroids.

    References
    ----------
    Liang, Zhang, Kwon, Yeung, Zou. "Mind the Gap: Understanding the Modality Gap in
    Multi-modal Contrastive Representation Learning", NeurIPS 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.diagnostics import modality_gap
    >>> images = np.array([[1.0, 0.0], [1.0, 0.0]])
    >>> texts = np.array([[0.0, 1.0]])
    >>> round(modality_gap(images, texts), 6)   # sqrt(2)
    1.414214
    """
    image_emb = _check_embeddings(image_emb, "image_emb")
    text_emb = _check_embeddings(text_emb, "text_emb")
    _check_same_width(image_emb, text_emb, "image_emb", "text_emb")
    if normalize:
        image_emb, text_emb = l2_normalize(image_emb), l2_normalize(text_emb)
    delta = image_emb.astype(np.float64).mean(axis=0) - text_emb.astype(np.float64).mean(axis=0)
    return float(np.linalg.norm(delta))


@validate_params(
    {"image_emb": ["array-like"], "text_emb": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def alignment_score(image_emb, text_emb):
    """Mean cosine similarity of matched image-text pairs (AlignCLIP, Eq. 5).

    Row ``i`` of ``image_emb`` and row ``i`` of ``text_emb`` must describe the same item
    (an image and its caption). Higher is better aligned; the range is [-1, 1].

    Parameters
    ----------
    image_emb : array-like of shape (n_pairs, d)
        Image embeddings.
    text_emb : array-like of shape (n_pairs, d)
        The matching text embeddings, in the same row order.

    Returns
    -------
    score : float
        ``mean_i cos(image_emb[i], text_emb[i])``.

    References
    ----------
    Eslami, de Melo. "Mitigate the Gap: Investigating Approaches for Improving
    Cross-Modal Alignment in CLIP" (AlignCLIP), ICLR 2025, Eq. 5 and Table 1; after
    Goel et al., "CyCLIP", NeurIPS 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.diagnostics import alignment_score
    >>> images = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> texts = np.array([[1.0, 1.0], [0.0, 1.0]])
    >>> round(alignment_score(images, texts), 6)   # (cos 45 deg + 1) / 2
    0.853553
    """
    image_emb = _check_embeddings(image_emb, "image_emb")
    text_emb = _check_embeddings(text_emb, "text_emb")
    _check_same_width(image_emb, text_emb, "image_emb", "text_emb")
    if image_emb.shape[0] != text_emb.shape[0]:
        raise ValueError(
            f"alignment_score needs matched pairs: image_emb has {image_emb.shape[0]} rows "
            f"but text_emb has {text_emb.shape[0]}."
        )
    cos = np.sum(
        l2_normalize(image_emb.astype(np.float64)) * l2_normalize(text_emb.astype(np.float64)),
        axis=1,
    )
    return float(cos.mean())


def _upper_pairs(S, mask=None):
    """Values of the strict upper triangle of square ``S`` (optionally where ``mask``)."""
    iu = np.triu_indices(S.shape[0], k=1)
    values = S[iu]
    if mask is not None:
        values = values[mask[iu]]
    return values


def _subsample(values, max_pairs, rng):
    if max_pairs is None or values.size <= max_pairs:
        return values
    keep = np.sort(rng.choice(values.size, size=max_pairs, replace=False))
    return values[keep]


@validate_params(
    {
        "emb_a": ["array-like"],
        "labels_a": ["array-like"],
        "emb_b": ["array-like", None],
        "labels_b": ["array-like", None],
        "max_pairs": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": [Interval(Integral, 0, None, closed="left"), np.random.Generator, None],
    },
    prefer_skip_nested_validation=True,
)
def similarity_distributions(
    emb_a, labels_a, emb_b=None, labels_b=None, *, max_pairs=None, random_state=None
):
    """Cosine-similarity samples by class and by modality (seed 002, Fig. 2 and 5).

    Parameters
    ----------
    emb_a : array-like of shape (n_a, d)
        Embeddings of one modality (usually images).
    labels_a : array-like of shape (n_a,)
        Class label of each row of ``emb_a``.
    emb_b : array-like of shape (n_b, d), default=None
        Embeddings of the other modality (usually texts: captions or class prompts).
        When given, the by-modality distributions are added.
    labels_b : array-like of shape (n_b,), default=None
        Class label of each row of ``emb_b``; when given, the image-text pairs are also
        split into same-class and different-class pairs.
    max_pairs : int, default=None
        Keep at most this many values per distribution (a uniform random subset, in
        pair order), which bounds what a histogram has to hold. None keeps all.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the subsampling (a local generator; global state is untouched).

    Returns
    -------
    distributions : dict of str to ndarray of shape (n_pairs,), float32
        ``"intra_class"`` and ``"inter_class"``: cosines of the unordered pairs
        ``i < j`` of ``emb_a`` with the same / a different label (Fig. 2a).
        With ``emb_b``: ``"intra_modal"`` (all pairs ``i < j`` within ``emb_a``) and
        ``"inter_modal"`` (all pairs ``(i, j)`` of a row of ``emb_a`` with a row of
        ``emb_b``) (Fig. 2b). With ``labels_b`` as well: ``"inter_modal_intra_class"``
        and ``"inter_modal_inter_class"``.

    Notes
    -----
    The full ``n_a x n_a`` (and ``n_a x n_b``) cosine matrix is formed; subsample the
    rows for very large sets.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.diagnostics import similarity_distributions
    >>> emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> d = similarity_distributions(emb, ["cat", "cat", "dog"])
    >>> d["intra_class"].tolist(), d["inter_class"].tolist()
    ([1.0], [0.0, 0.0])
    """
    emb_a = l2_normalize(_check_embeddings(emb_a, "emb_a").astype(np.float64))
    labels_a = _check_labels(labels_a, emb_a.shape[0], "labels_a", "emb_a")
    if emb_a.shape[0] < 2:
        raise ValueError(
            f"similarity_distributions needs at least 2 rows in emb_a, got {emb_a.shape[0]}."
        )
    rng = np.random.default_rng(random_state)

    S_aa = emb_a @ emb_a.T
    same = labels_a[:, None] == labels_a[None, :]
    out = {
        "intra_class": _upper_pairs(S_aa, same),
        "inter_class": _upper_pairs(S_aa, ~same),
    }
    if emb_b is not None:
        emb_b = l2_normalize(_check_embeddings(emb_b, "emb_b").astype(np.float64))
        _check_same_width(emb_a, emb_b, "emb_a", "emb_b")
        S_ab = emb_a @ emb_b.T
        out["intra_modal"] = _upper_pairs(S_aa)
        out["inter_modal"] = S_ab.ravel()
        if labels_b is not None:
            labels_b = _check_labels(labels_b, emb_b.shape[0], "labels_b", "emb_b")
            same_ab = labels_a[:, None] == labels_b[None, :]
            out["inter_modal_intra_class"] = S_ab[same_ab]
            out["inter_modal_inter_class"] = S_ab[~same_ab]
    elif labels_b is not None:
        raise ValueError("labels_b was given without emb_b.")
    return {key: _subsample(v, max_pairs, rng).astype(np.float32) for key, v in out.items()}


def _check_labels(labels, n_rows, name, emb_name):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n_rows:
        raise ValueError(
            f"{name} must be 1-D with one label per row of {emb_name} ({n_rows}), "
            f"got shape {labels.shape}."
        )
    return labels


@validate_params(
    {"S_inter": ["array-like"], "rank": [Interval(Integral, 1, None, closed="left"), None]},
    prefer_skip_nested_validation=True,
)
def recover_intra_similarity(S_inter, *, rank=None):
    """Recover image-image similarities from image-text similarities alone.

    Seed 002, Appendix A: with unit rows ``X_T`` (texts) and ``X_I`` (images) in ``d``
    dimensions, ``S_inter = X_T X_Iᵀ = U Σ Vᵀ``. The columns of ``V`` (n_images x d) span
    those of ``X_I``, so ``X_I = V C`` and ``S_intra = X_I X_Iᵀ = V Q Vᵀ`` with
    ``Q = C Cᵀ`` symmetric. Unit image rows give one linear equation per image,
    ``v_iᵀ Q v_i = 1`` (Eq. 9), in the ``d(d+1)/2`` unknowns of ``Q``; with at least that
    many images in general position the system has exactly one solution, which is
    substituted into Eq. 10. The image-image geometry is therefore fixed by the
    image-text geometry: there is no degree of freedom left. The system is solved
    through its normal equations (Cholesky, plus one step of iterative refinement).

    Parameters
    ----------
    S_inter : array-like of shape (n_texts, n_images)
        Cosine similarities, text rows against image columns (``X_T X_Iᵀ``). Pass
        ``S.T`` to recover the text-text similarities instead.
    rank : int, default=None
        The embedding dimension ``d``. None infers it as the numerical rank of
        ``S_inter`` (singular values above ``σ_max · max(shape) · eps`` of the input's
        float precision, as ``numpy.linalg.matrix_rank``).

    Returns
    -------
    S_intra : ndarray of shape (n_images, n_images), float64
        The recovered ``X_I X_Iᵀ``; its diagonal is 1 up to round-off.

    Raises
    ------
    ValueError
        If there are fewer images than unknowns (``n_images < d(d+1)/2``), fewer texts
        than ``d``, or the images do not determine ``Q`` uniquely.

    Notes
    -----
    Computed in float64. The system matrix has ``n_images x d(d+1)/2`` entries
    (about 16 MB for ``d = 64`` and 1,000 images): ``d`` of a few hundred needs a
    lot of memory.

    References
    ----------
    Herzog, Wang. "Reevaluating the intra-modal misalignment hypothesis in CLIP",
    2026, Sec. 3.1 and Appendix A, Eq. 4-10.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.diagnostics import recover_intra_similarity
    >>> rng = np.random.default_rng(0)
    >>> X_I = rng.normal(size=(40, 3)); X_I /= np.linalg.norm(X_I, axis=1, keepdims=True)
    >>> X_T = rng.normal(size=(40, 3)); X_T /= np.linalg.norm(X_T, axis=1, keepdims=True)
    >>> S_intra = recover_intra_similarity(X_T @ X_I.T)
    >>> bool(np.allclose(S_intra, X_I @ X_I.T, atol=1e-10))
    True
    """
    S = check_array(S_inter, dtype=[np.float64, np.float32], input_name="S_inter")
    input_dtype = S.dtype
    S = S.astype(np.float64)
    n_texts, n_images = S.shape
    _, singular_values, Vt = np.linalg.svd(S, full_matrices=False)
    d = _embedding_dimension(singular_values, S.shape, input_dtype, rank)
    n_unknowns = d * (d + 1) // 2
    _check_enough_rows(n_texts, n_images, d)

    V = Vt[:d].T
    coef = _solve_unit_diagonal(_quadratic_form_design(V), n_images, n_unknowns)
    Q = np.zeros((d, d))
    Q[np.triu_indices(d)] = coef
    Q = Q + np.triu(Q, k=1).T
    return V @ Q @ V.T


def _embedding_dimension(singular_values, shape, dtype, rank):
    """``rank`` checked against ``shape``, or the numerical rank when it is None."""
    if rank is None:
        d = numerical_rank(singular_values, shape, dtype)
        if d == 0:
            raise ValueError("S_inter is numerically zero; its rank (the dimension d) is 0.")
        return d
    if isinstance(rank, bool) or rank > min(shape):
        raise ValueError(
            f"rank must be an integer in [1, {min(shape)}] (the smaller side of "
            f"S_inter {shape}), got {rank!r}."
        )
    return int(rank)


def _check_enough_rows(n_texts, n_images, d):
    """Eq. 9 has d(d+1)/2 unknowns: one equation per image, and d texts to span."""
    n_unknowns = d * (d + 1) // 2
    if n_images < n_unknowns:
        raise ValueError(
            f"Recovery needs at least d(d+1)/2 = {n_unknowns} images for d = {d}, but "
            f"S_inter has {n_images} image columns; the system on Q is underdetermined."
        )
    if n_texts < d:
        raise ValueError(f"Recovery needs at least d = {d} texts, but S_inter has {n_texts} rows.")


def _solve_unit_diagonal(A, n_images, n_unknowns):
    """Least-squares solution of ``A x = 1`` by the normal equations.

    Cholesky of ``AᵀA`` costs about a fifth of an SVD-based ``lstsq`` (which takes
    minutes for d = 64 on two cores); one step of iterative refinement on the
    residual restores the accuracy the squared condition number costs. A pivot of the
    factor that is numerically zero means the system has no unique solution.
    """
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    b = np.ones(A.shape[0])
    gram = A.T @ A
    not_unique = ValueError(
        f"The {n_images} images do not determine Q uniquely (the system in its "
        f"{n_unknowns} unknowns is rank deficient); they are not in general position."
    )
    try:
        factor = cho_factor(gram, check_finite=False)
    except LinAlgError:
        raise not_unique from None
    pivots = np.abs(np.diag(factor[0]))
    if (pivots.min() / pivots.max()) ** 2 < n_unknowns * np.finfo(np.float64).eps:
        raise not_unique
    x = cho_solve(factor, A.T @ b, check_finite=False)
    return x + cho_solve(factor, A.T @ (b - A @ x), check_finite=False)


def _quadratic_form_design(V):
    """Rows ``v_iᵀ Q v_i`` as linear forms in the upper triangle of symmetric ``Q``.

    Column ``(j, k)`` with ``j < k`` carries ``2 V_ij V_ik`` because ``Q_jk`` and
    ``Q_kj`` are one unknown; diagonal columns carry ``V_ij²``.
    """
    j, k = np.triu_indices(V.shape[1])
    return V[:, j] * V[:, k] * np.where(j == k, 1.0, 2.0)
