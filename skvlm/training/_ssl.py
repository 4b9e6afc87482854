"""Image-only self-supervision: SimCLR's NT-Xent loss, its views and projection head.

Used by the ``simclr`` loss of :class:`~skvlm.training.ContrastiveTrainer` (the
image-only ``skvlm-tiny-ssl``) and by its ``ssl_weight`` term (SLIP: CLIP plus an
image-image term, ``skvlm-tiny-slip``). The views are random resized crops with
flips, brightness, contrast, a small per-channel gain (no hue rotation, so colour
stays a property of the object) and pixel noise: two augmented views for the
image-only loss, the image itself and one view for SLIP's added term (its CLIP
term sees the image itself). The augmentation parameters come from a numpy
generator, so a run stays a pure function of its seed.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def nt_xent_loss(z1, z2, temperature=0.1):
    """SimCLR's normalised-temperature cross-entropy over 2n views.

    Each row of ``z1`` has its positive in the same row of ``z2`` (and vice versa);
    the other 2n - 2 views of the batch are its negatives (Chen et al., ICML 2020,
    Eq. 1). Features are L2-normalised here.

    Examples
    --------
    >>> eye = torch.eye(2)
    >>> round(float(nt_xent_loss(eye, eye, temperature=1.0)), 4)  # -log(e / (e + 2))
    0.5514
    """
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def projection_head(dim, hidden=256, out=64):
    """SimCLR's MLP head (used in training only; the shipped encoder stops before it)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))


def augment(pixels, rng, min_scale=0.3, max_jitter=0.4, channel_gain=0.1, noise=0.15):
    """A random view of each normalised image tensor (n, 3, H, W).

    Random resized crop (area scale in ``[min_scale, 1]``), horizontal flip with
    probability 1/2, brightness and contrast factors in ``1 ± max_jitter``, a
    per-channel gain in ``1 ± channel_gain`` and Gaussian noise of standard
    deviation up to ``noise`` (in normalised units); parameters drawn from the
    numpy generator ``rng``.
    """
    n = pixels.shape[0]
    scale = np.sqrt(rng.uniform(min_scale, 1.0, n))
    shift = rng.uniform(-1, 1, (n, 2)) * (1 - scale)[:, None]
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(
        torch.from_numpy(theta).to(pixels.device), list(pixels.shape), align_corners=False
    )
    view = F.grid_sample(
        pixels, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    factors = rng.uniform(1 - max_jitter, 1 + max_jitter, (n, 2)).astype(np.float32)
    brightness = torch.from_numpy(factors[:, 0]).to(pixels.device).view(n, 1, 1, 1)
    contrast = torch.from_numpy(factors[:, 1]).to(pixels.device).view(n, 1, 1, 1)
    gain = torch.from_numpy(
        rng.uniform(1 - channel_gain, 1 + channel_gain, (n, 3, 1, 1)).astype(np.float32)
    )
    sigma = torch.from_numpy(rng.uniform(0, noise, (n, 1, 1, 1)).astype(np.float32))
    grain = torch.from_numpy(rng.standard_normal(tuple(pixels.shape), dtype=np.float32))
    mean = view.mean(dim=(1, 2, 3), keepdim=True)
    view = ((view - mean) * contrast + mean * brightness) * gain.to(pixels.device)
    return view + sigma.to(pixels.device) * grain.to(pixels.device)
