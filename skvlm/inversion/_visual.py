"""OVI: pseudo patches in place of a ViT image tower's patch embeddings.

A forward hook on the patch embedding (``conv1``) swaps its output for the pseudo
patches, repeated over the patch grid by nearest interpolation; the class token,
positional embedding, transformer, pooling and projection are the model's own code.
"""

import numbers

from .._sklearn import Interval, StrOptions
from ..models import replace_output, vit_tower
from ._base import _BaseInverter


class _PatchInjector:
    """Replaces a ViT's patch embeddings by pseudo patches (nearest-repeated to the grid)."""

    def __init__(self, loaded, n_patches):
        visual = vit_tower(loaded.model, loaded.name)
        self.loaded = loaded
        self.conv = visual.conv1
        self.token_width = int(visual.class_embedding.shape[-1])
        self.n_grid = int(visual.positional_embedding.shape[0]) - 1
        if n_patches > self.n_grid:
            raise ValueError(
                f"n_patches={n_patches} exceeds the {self.n_grid} patch positions of "
                f"{loaded.name}'s image tower."
            )
        self.n_patches = self.n_pseudo = n_patches

    def marker(self, n_rows):
        import torch

        height, width = self.loaded.image_size
        return torch.zeros(
            (n_rows, 3, height, width), device=self.loaded.device, dtype=self.loaded.dtype
        )

    def forward(self, marker, tokens):
        import torch

        # As Cross the Gap does with nearest interpolation: grid position i holds
        # pseudo patch floor(i * n_patches / n_grid).
        source = torch.arange(self.n_grid, device=tokens.device) * self.n_patches // self.n_grid

        def replace(patches):
            batch, width, grid_h, grid_w = patches.shape
            grid = tokens[:, source].to(patches.dtype)  # (B, n_grid, width)
            return grid.permute(0, 2, 1).reshape(batch, width, grid_h, grid_w)

        with replace_output(self.conv, marker, replace):
            return self.loaded.model.encode_image(marker)


class VisualInverter(_BaseInverter):
    """Optimization-based Visual Inversion (OVI): text embeddings to image features.

    For each text embedding, ``n_patches`` pseudo-patch tokens replace the patch
    embeddings of a ViT image tower (repeated over the patch grid by nearest
    interpolation, after which the class token and positional embeddings are added
    as for an image) and are optimised with AdamW so that the image feature has
    maximal cosine similarity with the text embedding. ``transform`` returns those
    image features.

    The input is not checked to be *text* embeddings (same width as image ones).

    Parameters
    ----------
    encoder : CLIPEncoder, str or None, default=None
        As for :class:`TextualInverter`; the image tower must be a ViT.
    n_patches : int or "auto", default="auto"
        Pseudo patches per row (at most the number of patch positions). ``"auto"``:
        Cross the Gap's per-model setting (``configs/ovi/*.yaml``): 4 for CLIP
        ViT-L/14 and SigLIP B/16, 2 for OpenCLIP ViT-L/14 and SLIP L/16, 1 otherwise.
    n_steps : int, default=1000
        Optimisation steps per batch.
    learning_rate : float, default=0.02
        AdamW's learning rate.
    weight_decay : float, default=0.01
        AdamW's decoupled weight decay.
    batch_size : int, default=64
        Rows optimised together (speed only; results do not depend on it).
    tol : float or None, default=None
        Per-row early stop, as for :class:`TextualInverter`.
    random_state : int, RandomState or None, default=None
        Seeds the initial patches, N(0, 0.02^2), shared by all rows.
    verbose : int, default=0
        Progress bar over the optimisation steps of all batches.

    Attributes
    ----------
    n_features_in_ : int
        Width of the embeddings seen in ``fit``.
    loss_curve_ : ndarray of shape (n_iter_,)
        Mean loss over rows at each step of the last ``fit_transform``.
    n_iter_ : int
        Steps run by the last ``fit_transform``.

    References
    ----------
    Mistretta et al., "Cross the Gap", ICLR 2025, Sec. 3 (OVI).

    Examples
    --------
    >>> from skvlm import CLIPEncoder
    >>> encoder = CLIPEncoder("skvlm-tiny", pretrained=None, device="cpu")
    >>> texts = encoder.encode_text(["a red circle", "a blue square"])
    >>> ovi = VisualInverter(encoder, n_steps=20, random_state=0)
    >>> ovi.fit_transform(texts).shape
    (2, 64)
    """

    _parameter_constraints = {
        **_BaseInverter._parameter_constraints,
        "n_patches": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
    }

    def __init__(
        self,
        encoder=None,
        *,
        n_patches="auto",
        n_steps=1000,
        learning_rate=0.02,
        weight_decay=0.01,
        batch_size=64,
        tol=None,
        random_state=None,
        verbose=0,
    ):
        self.encoder = encoder
        self.n_patches = n_patches
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    def _patches_for(self, loaded):
        if self.n_patches == "auto":
            return _auto_n_patches(loaded.name, loaded.pretrained)
        return self.n_patches

    def _check_model(self, loaded):
        _PatchInjector(loaded, self._patches_for(loaded))

    def _injector(self, loaded):
        return _PatchInjector(loaded, self._patches_for(loaded))


def _auto_n_patches(name, pretrained):
    """Cross the Gap's OVI pseudo-patch count for a model (``configs/ovi/*.yaml``)."""
    name = str(name)
    if name.startswith("ViT-L-14"):
        return 4 if pretrained == "openai" else 2  # CLIP vs OpenCLIP ViT-L/14
    if name.startswith("ViT-B-16-SigLIP"):
        return 4
    if "slip" in name.lower() and ("l-16" in name.lower() or "l16" in name.lower()):
        return 2
    return 1
