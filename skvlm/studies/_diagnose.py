"""The geometry diagnostics of paired image and text embeddings (seed papers' indicators)."""

import numpy as np

from .._math import l2_normalize
from ..diagnostics import (
    alignment_score,
    modality_gap,
    recover_intra_similarity,
    similarity_distributions,
)


def diagnose_embeddings(
    image_emb,
    text_emb,
    labels,
    *,
    recover=True,
    max_pairs=20000,
    random_state=0,
):
    """The seed papers' geometry indicators for paired image and text embeddings.

    Parameters
    ----------
    image_emb, text_emb : array-like of shape (n, d)
        Row i of each is one image and its caption.
    labels : array-like of shape (n,)
        A class label per image (for the by-class histograms).
    recover : bool, default=True
        Also recover the image-image similarities from the text-image ones (seed 002,
        App. A) and report the largest error; skipped (None) when there are fewer
        than ``d(d+1)/2`` images.
    max_pairs : int, default=20000
        Pairs kept per histogram.
    random_state : int, default=0

    Returns
    -------
    diagnostics : dict
        ``modality_gap``, ``alignment_score``, the mean cosine of each similarity
        distribution (``mean_cos_intra_class``...), ``recovery_max_abs_error`` and
        ``recovery_n_images``; and under ``"distributions"`` the sampled cosines
        themselves (for :func:`skvlm.plotting.plot_similarity_histograms`).

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.studies import diagnose_embeddings
    >>> images = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    >>> d = diagnose_embeddings(images, images, [0, 1, 0], recover=False)
    >>> round(d["alignment_score"], 6), round(d["modality_gap"], 6)
    (1.0, 0.0)
    """
    image_emb = np.asarray(image_emb, dtype=np.float64)
    text_emb = np.asarray(text_emb, dtype=np.float64)
    distributions = similarity_distributions(
        image_emb, labels, text_emb, max_pairs=max_pairs, random_state=random_state
    )
    out = {
        "modality_gap": modality_gap(image_emb, text_emb),
        "alignment_score": alignment_score(image_emb, text_emb),
    }
    for key, values in distributions.items():
        out[f"mean_cos_{key}"] = float(np.mean(values)) if values.size else float("nan")
    out["recovery_max_abs_error"] = None
    out["recovery_n_images"] = None
    d = image_emb.shape[1]
    n_needed = d * (d + 1) // 2
    if recover and image_emb.shape[0] >= n_needed + d:
        n_images = min(image_emb.shape[0], n_needed + 4 * d)
        X_I = l2_normalize(image_emb[:n_images])
        X_T = l2_normalize(text_emb[: min(len(text_emb), 4 * d)])
        recovered = recover_intra_similarity(X_T @ X_I.T, rank=d)
        out["recovery_max_abs_error"] = float(np.abs(recovered - X_I @ X_I.T).max())
        out["recovery_n_images"] = int(n_images)
    out["distributions"] = distributions
    return out
