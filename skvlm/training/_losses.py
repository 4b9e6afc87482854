"""Contrastive losses: CLIP, SigLIP and AlignCLIP's intra-modal separation (IMSep).

All losses take L2-normalised features of matched image–text pairs (row i of the
image features goes with row i of the text features) and the *exponentiated*
logit scale, as open_clip's ``CLIP.forward`` returns it.
"""

import torch
from torch.nn import functional as F


def _targets(n, device):
    return torch.arange(n, device=device)


def clip_loss(image_features, text_features, logit_scale):
    """Symmetric InfoNCE of CLIP: mean of the image→text and text→image cross-entropies.

    ``L = ½ [H(s · E_v E_tᵀ, Y) + H(s · E_t E_vᵀ, Y)]`` with ``s = logit_scale`` and
    ``Y`` the pair indices (Radford et al., 2021; seed 004, Eq. 4).

    Parameters
    ----------
    image_features, text_features : Tensor of shape (n, d)
        Normalised features of n matched pairs.
    logit_scale : Tensor or float
        The inverse temperature (already exponentiated).

    Returns
    -------
    Tensor, a scalar.

    Examples
    --------
    >>> eye = torch.eye(2)
    >>> round(float(clip_loss(eye, eye, 1.0)), 4)  # log(1 + e^-1)
    0.3133
    """
    logits = logit_scale * image_features @ text_features.T
    targets = _targets(logits.shape[0], logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def siglip_loss(image_features, text_features, logit_scale, logit_bias):
    """Pairwise sigmoid loss of SigLIP (Zhai et al., ICCV 2023, Algorithm 1).

    ``L = -1/n Σ_ij log σ(z_ij (s · x_i·y_j + b))`` with ``z_ij = 1`` for matched
    pairs and ``-1`` otherwise; normalised by the batch size as in the paper.

    Examples
    --------
    >>> eye = torch.eye(2)
    >>> round(float(siglip_loss(eye, eye, 1.0, 0.0)), 4)  # (2 log(1+e^-1) + 2 log 2) / 2
    1.0064
    """
    logits = logit_scale * image_features @ text_features.T + logit_bias
    signs = 2 * torch.eye(logits.shape[0], device=logits.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(signs * logits).sum() / logits.shape[0]


def imsep_loss(image_features, text_features, logit_scale, semantic_distance, alpha=1.0, beta=0.5):
    """AlignCLIP's loss: cross-modal separation plus semantically rescaled IMSep.

    With ``V = E_v E_vᵀ`` the image–image cosines, ``D`` the semantic distances of
    the captions (``D_ii = 0``), ``M = E_v E_tᵀ`` and ``diag(M)`` its diagonal
    (off-diagonal entries zeroed), seed 004 defines (Eqs. 9–13)::

        ŷ_vsep  = s · [diag(M) + V ⊙ D]
        L_IMSep = H(ŷ_vsep, Y)
        L_CRsep = H(s · M, Y) + H(s · Mᵀ, Y)
        L       = α · L_CRsep + β · L_IMSep

    Each image's positive is its own caption; its negatives are the other images,
    their similarity shrunk where the captions are semantically close, so similar
    images are pushed apart less. Note that ``L_CRsep`` (Eq. 12, and the reference
    implementation) is the *sum* of the two cross-entropies, i.e. twice
    :func:`clip_loss`: with ``beta=0`` this loss is ``2 · alpha · clip_loss``, and
    ``alpha=0.5, beta=0`` gives :func:`clip_loss` exactly.

    Parameters
    ----------
    image_features, text_features : Tensor of shape (n, d)
        Normalised features of n matched pairs.
    logit_scale : Tensor or float
        The inverse temperature (already exponentiated).
    semantic_distance : Tensor or array of shape (n, n)
        Distances in [0, 1] (or [0, 2] for cosine distances) between the captions;
        see :func:`caption_distance`. Treated as a constant (no gradient).
    alpha, beta : float, default=1.0, 0.5
        Weights of the two terms (the paper's values).

    References
    ----------
    S. Eslami and G. de Melo, "Mitigate the Gap: Investigating Approaches for
    Improving Cross-Modal Alignment in CLIP", ICLR 2025, Sec. 3.2, Eqs. 6–13.

    Examples
    --------
    >>> eye = torch.eye(2)
    >>> far = torch.ones(2, 2) - torch.eye(2)
    >>> round(float(imsep_loss(eye, eye, 1.0, far, alpha=0.5, beta=0.0)), 4)
    0.3133
    """
    distance = torch.as_tensor(semantic_distance, dtype=image_features.dtype)
    distance = distance.to(image_features.device).detach()
    n = image_features.shape[0]
    if distance.shape != (n, n):
        raise ValueError(
            f"semantic_distance must have shape ({n}, {n}) for a batch of {n} pairs, "
            f"got {tuple(distance.shape)}."
        )
    cross = image_features @ text_features.T
    targets = _targets(n, cross.device)
    cross_modal = F.cross_entropy(logit_scale * cross, targets) + F.cross_entropy(
        logit_scale * cross.T, targets
    )
    if beta == 0:
        return alpha * cross_modal
    eye = torch.eye(n, device=cross.device, dtype=cross.dtype)
    image_image = image_features @ image_features.T
    intra = logit_scale * (cross * eye + image_image * distance * (1 - eye))
    return alpha * cross_modal + beta * F.cross_entropy(intra, targets)
