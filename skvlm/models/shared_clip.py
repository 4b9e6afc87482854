"""SharedCLIP: one transformer and one projection for both modalities (AlignCLIP).

Eslami & de Melo (ICLR 2025, seed 004, Sec. 3.1) share the transformer encoder and
the projection layer between the image and the text tower, keeping only the stems
modality-specific, to shrink CLIP's modality gap. Here the stems are open_clip's:
patch embedding (``conv1``), class token and positional embeddings for images;
token and positional embeddings (and the causal mask) for text. The layer norms
around the shared transformer (``ln_pre``/``ln_post`` for images, ``ln_final`` for
text) stay per modality by default: they are part of each tower's input/output
adapter. With ``shared_final_ln=True`` the final LayerNorm is one module for both
modalities, as in AlignCLIP's reference code (its ``ln_post``): ``visual.ln_post``
is then ``ln_final``.

The attribute names mirror open_clip's ``CLIP`` so code written against it (the
modality inverters, the encoders) drives a SharedCLIP unchanged: ``model.transformer``
and ``model.visual.transformer`` are the same module, ``model.text_projection`` and
``model.visual.proj`` the same parameter (exposed as properties, so the state dict
holds each tensor once).
"""

import math

import torch
from open_clip.transformer import LayerNorm, Transformer, text_global_pool
from torch import nn
from torch.nn import functional as F


class _SharedVisionStem(nn.Module):
    """The image-specific part of a SharedCLIP, shaped like open_clip's ViT."""

    def __init__(self, image_size, patch_size, width, embed_dim, own_ln_post=True):
        super().__init__()
        self.image_size = (image_size, image_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (image_size // patch_size, image_size // patch_size)
        self.output_dim = embed_dim
        self.output_tokens = False
        self.pool_type = "tok"
        self.final_ln_after_pool = False
        self.attn_pool = None
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        n_tokens = self.grid_size[0] * self.grid_size[1] + 1
        self.positional_embedding = nn.Parameter(scale * torch.randn(n_tokens, width))
        self.patch_dropout = nn.Identity()
        self.ln_pre = LayerNorm(width)
        if own_ln_post:
            self.ln_post = LayerNorm(width)
        self.__dict__["_owner"] = None  # set by SharedCLIP; not a registered submodule

    @property
    def transformer(self):
        return self._owner.transformer

    @property
    def proj(self):
        return self._owner.projection

    def _embeds(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(self.patch_dropout(x))

    def _global_pool(self, x):
        return x[:, 0], x[:, 1:]

    def _final_ln(self):
        ln = self._modules.get("ln_post")
        return ln if ln is not None else self._owner.ln_final

    def _pool(self, x):
        return self._global_pool(self._final_ln()(x))

    def forward(self, x):
        x = self.transformer(self._embeds(x))
        pooled, _ = self._pool(x)
        return pooled @ self.proj


class SharedCLIP(nn.Module):
    """A CLIP whose two towers share one transformer and one projection.

    Parameters
    ----------
    embed_dim : int
        Width of the joint embedding space.
    width, layers, heads : int
        The shared transformer.
    image_size, patch_size : int
        The image stem (a ViT patch embedding).
    context_length, vocab_size : int
        The text stem (token and positional embeddings, causal mask).
    mlp_ratio : float, default=4.0
    init_logit_scale : float, default=log(1/0.07)
    shared_final_ln : bool, default=False
        One final LayerNorm for both modalities (AlignCLIP's shared ``ln_post``);
        ``visual.ln_post`` is then ``ln_final`` itself.

    Attributes
    ----------
    visual : module
        Image stem with ``conv1``, ``class_embedding``, ``positional_embedding``,
        ``ln_pre``, ``ln_post``; ``visual.transformer`` and ``visual.proj`` are the
        shared ones.
    transformer : open_clip Transformer (batch first), shared.
    projection : Parameter of shape (width, embed_dim), shared; ``text_projection``
        is the same tensor.
    token_embedding, positional_embedding, ln_final, attn_mask
        The text stem, named as in open_clip's ``CLIP``.
    logit_scale : Parameter
        Log of the inverse temperature.

    References
    ----------
    S. Eslami and G. de Melo, "Mitigate the Gap: Investigating Approaches for
    Improving Cross-Modal Alignment in CLIP", ICLR 2025, Sec. 3.1 (SharedCLIP).

    Examples
    --------
    >>> model = SharedCLIP(embed_dim=16, width=32, layers=2, heads=2, image_size=16,
    ...                    patch_size=8, context_length=8, vocab_size=20)
    >>> image, text, scale = model(torch.zeros(3, 3, 16, 16), torch.ones(3, 8, dtype=torch.long))
    >>> image.shape, text.shape, model.visual.transformer is model.transformer
    (torch.Size([3, 16]), torch.Size([3, 16]), True)
    """

    def __init__(
        self,
        embed_dim,
        width,
        layers,
        heads,
        image_size,
        patch_size,
        context_length,
        vocab_size,
        mlp_ratio=4.0,
        init_logit_scale=math.log(1 / 0.07),
        shared_final_ln=False,
    ):
        super().__init__()
        self.shared_final_ln = bool(shared_final_ln)
        self.embed_dim = embed_dim
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.text_pool_type = "argmax"
        self.transformer = Transformer(width, layers, heads, mlp_ratio=mlp_ratio, batch_first=True)
        self.projection = nn.Parameter(torch.empty(width, embed_dim))
        self.visual = _SharedVisionStem(
            image_size, patch_size, width, embed_dim, own_ln_post=not shared_final_ln
        )
        self.visual.__dict__["_owner"] = self
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.ln_final = LayerNorm(width)
        if shared_final_ln:
            # Visible as visual.ln_post (open_clip's name) without a second registration.
            self.visual.__dict__["ln_post"] = self.ln_final
        self.register_buffer("attn_mask", self._causal_mask(context_length), persistent=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.logit_bias = None
        self._init_parameters(width, layers)

    @staticmethod
    def _causal_mask(length):
        return torch.full((length, length), float("-inf")).triu_(1)

    def _init_parameters(self, width, layers):
        # open_clip's text-tower initialisation, applied to the shared transformer.
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        attn_std = width**-0.5
        proj_std = attn_std * (2 * layers) ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.projection, std=attn_std)

    @property
    def text_projection(self):
        return self.projection

    def encode_image(self, image, normalize=False):
        features = self.visual(image)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text, normalize=False):
        x = self.token_embedding(text) + self.positional_embedding[: text.shape[1]]
        mask = self.attn_mask[: text.shape[1], : text.shape[1]]
        x = self.ln_final(self.transformer(x, attn_mask=mask))
        x = text_global_pool(x, text, self.text_pool_type) @ self.projection
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, image=None, text=None):
        image_features = self.encode_image(image, normalize=True) if image is not None else None
        text_features = self.encode_text(text, normalize=True) if text is not None else None
        return image_features, text_features, self.logit_scale.exp()


def build_shared_clip(config):
    """Build a :class:`SharedCLIP` from a config dict (``configs/shared/*.json``).

    The config has ``embed_dim``, the shared ``width``/``layers``/``heads``
    (``mlp_ratio`` and ``shared_final_ln`` optional), ``vision_cfg`` (``image_size``, ``patch_size``) and
    ``text_cfg`` (``context_length``, ``vocab_size``).

    Examples
    --------
    >>> config = {"embed_dim": 8, "width": 16, "layers": 1, "heads": 2,
    ...           "vision_cfg": {"image_size": 16, "patch_size": 8},
    ...           "text_cfg": {"context_length": 6, "vocab_size": 10}}
    >>> build_shared_clip(config).projection.shape
    torch.Size([16, 8])
    """
    known = {
        "embed_dim",
        "width",
        "layers",
        "heads",
        "mlp_ratio",
        "shared_final_ln",
        "vision_cfg",
        "text_cfg",
    }
    unknown = set(config) - known
    if unknown:
        raise ValueError(
            f"Unknown SharedCLIP config keys {sorted(unknown)}; known: {sorted(known)}."
        )
    vision, text = config["vision_cfg"], config["text_cfg"]
    return SharedCLIP(
        embed_dim=config["embed_dim"],
        width=config["width"],
        layers=config["layers"],
        heads=config["heads"],
        mlp_ratio=config.get("mlp_ratio", 4.0),
        shared_final_ln=config.get("shared_final_ln", False),
        image_size=vision["image_size"],
        patch_size=vision["patch_size"],
        context_length=text["context_length"],
        vocab_size=text["vocab_size"],
    )
