"""ContrastiveTrainer: fit a CLIP-style model on image–caption pairs.

The recipe is open_clip's (and the feasibility notes'): AdamW (fused when the
device supports it) with betas (0.9, 0.98), eps 1e-6 and weight decay on weight
matrices only; linear warm-up then cosine decay; a learnable temperature whose log
is clamped at ln 100 after every step. Every batch is drawn from a generator seeded
by (random_state, step), so a run is a pure function of its seed and step count:
deterministic on the CPU, and a run resumed from a checkpoint continues exactly
as the uninterrupted run would have.
"""

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ._losses import clip_loss, imsep_loss, siglip_loss
from ._semantic import resolve_semantic_distance
from ._ssl import augment, nt_xent_loss, projection_head

_LOSSES = ("clip", "siglip", "imsep", "simclr")
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _batch_generator(random_state, step):
    return np.random.default_rng([int(random_state), int(step)])


def _view_generator(random_state, step):
    # The augmentations' own stream, so the batches do not depend on the loss.
    return np.random.default_rng([int(random_state), int(step), 1])


def images_to_tensor(images, mean=_OPENAI_MEAN, std=_OPENAI_STD):
    """(n, H, W, 3) uint8 images → normalised (n, 3, H, W) float32 tensor.

    For images already at the model's input size this equals open_clip's
    evaluation transform (resize to the same size is the identity), without PIL.
    A float tensor (n, 3, H, W) is passed through unchanged.
    """
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        return images
    pixels = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels - mean) / std


def _optimizer_groups(model, extra):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # Weight matrices (and conv kernels, token tables) decay; gains, biases,
        # class/positional vectors and the temperature do not.
        is_matrix = param.ndim >= 2 and "positional_embedding" not in name
        (decay if is_matrix else no_decay).append(param)
    return decay, no_decay + list(extra)


def _make_adamw(groups, learning_rate, weight_decay, betas, eps, device):
    decay, no_decay = groups
    param_groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    try:
        return torch.optim.AdamW(param_groups, lr=learning_rate, betas=betas, eps=eps, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(param_groups, lr=learning_rate, betas=betas, eps=eps)


def cosine_schedule(step, n_steps, warmup_steps, learning_rate, min_ratio=0.0):
    """Linear warm-up to ``learning_rate`` then cosine decay to ``min_ratio`` of it.

    Examples
    --------
    >>> [round(cosine_schedule(s, 10, 2, 1.0), 3) for s in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, n_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return learning_rate * (min_ratio + (1.0 - min_ratio) * cosine)


def _output_dim(model):
    """Width of the features the image encoder returns (before any normalisation)."""
    visual = getattr(model, "visual", model)
    dim = getattr(visual, "output_dim", None)
    if dim is None:
        raise ValueError("Cannot tell the image encoder's output width (no output_dim).")
    return int(dim)


class ContrastiveTrainer:
    """Train a CLIP-style model with a contrastive loss.

    Parameters
    ----------
    model : torch.nn.Module
        An open_clip ``CLIP`` or a :class:`skvlm.models.shared_clip.SharedCLIP`:
        anything with ``encode_image``, ``encode_text`` and a ``logit_scale``
        parameter. Trained in place.
        For ``loss="simclr"``, an image encoder (a module mapping pixels to
        features, e.g. open_clip's ``VisionTransformer``).
    tokenizer : callable or None
        list of str → LongTensor (n, context_length); None for ``loss="simclr"``.
    loss : {"clip", "siglip", "imsep", "simclr"}, default="clip"
        :func:`clip_loss`, :func:`siglip_loss` (a learnable bias is added when the
        model has none), :func:`imsep_loss` (AlignCLIP) or image-only SimCLR
        (:func:`~skvlm.training._ssl.nt_xent_loss` between each image and an
        augmented view, through a projection head; captions are ignored).
    n_steps : int, default=1000
        Total optimisation steps (a fixed budget, so a run is reproducible).
    batch_size : int, default=256
    learning_rate : float, default=1e-3
        Peak learning rate.
    warmup_steps : int or None, default=None
        Linear warm-up length; None is 5% of ``n_steps``.
    weight_decay : float, default=0.1
        AdamW decay, applied to weight matrices only.
    betas : tuple, default=(0.9, 0.98)
    eps : float, default=1e-6
    max_logit_scale : float, default=100
        The inverse temperature is clamped to at most this (CLIP's cap).
    alpha, beta : float, default=1.0, 0.5
        IMSep weights (seed 004).
    semantic_distance : {"jaccard", "attributes", "sentence", "auto"} or callable, default="jaccard"
        Caption distances for IMSep: :func:`caption_distance` (word overlap),
        :func:`~skvlm.datasets.attribute_distance` (the scene captions' parsed
        attributes, graded), :class:`SentenceEncoderDistance` (SBERT, ``text``
        extra), ``"auto"`` (SBERT when sentence-transformers and its weights are
        available offline, else the attribute distance), or a callable list of
        str → (n, n) array.
    ssl_weight : float, default=0.0
        Weight of an added image-image SimCLR term (SLIP, Mu et al., 2022) for the
        text losses; its projection head is trained with the model.
    ssl_temperature : float, default=0.1
    image_mean, image_std : tuple or None
        Pixel normalisation; None takes the model's (``model.visual.image_mean``)
        or CLIP's.
    device : str, default="auto"
        CUDA when available, else CPU.
    random_state : int, default=0
        Seeds the batch sampling: batch ``s`` comes from a generator seeded by
        ``(random_state, s)``. No global seed is touched.
    checkpoint_path : str or Path or None
        Where :meth:`save_checkpoint` writes (every ``checkpoint_every`` steps and
        at the end of :meth:`fit`).
    checkpoint_every : int or None
    verbose : int, default=0
        A tqdm progress bar when > 0.

    Attributes
    ----------
    device_ : torch.device
        The resolved device.
    optimizer_ : torch.optim.AdamW
    ssl_head_ : Module or None
        The SimCLR projection head (``loss="simclr"`` or ``ssl_weight > 0``).
    semantic_distance_ : callable or None
        The resolved IMSep distance.
    step_ : int
        Optimisation steps done so far.
    loss_curve_ : list of float
        The loss at every step.
    logit_bias_ : Parameter or None
        The SigLIP bias the trainer added (when the model has none).

    Examples
    --------
    >>> from skvlm.models.shared_clip import SharedCLIP
    >>> from skvlm.models._tokenizer import CompactTokenizer
    >>> tok = CompactTokenizer(["a", "red", "blue", "circle"], context_length=8)
    >>> model = SharedCLIP(16, 32, 1, 2, image_size=16, patch_size=8,
    ...                    context_length=8, vocab_size=tok.vocab_size)
    >>> images = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    >>> trainer = ContrastiveTrainer(model, tokenizer=tok, n_steps=2, batch_size=4, device="cpu", verbose=0)
    >>> trainer.fit(images, ["a red circle", "a blue circle"] * 2).step_
    2
    """

    def __init__(
        self,
        model,
        *,
        tokenizer=None,
        loss="clip",
        n_steps=1000,
        batch_size=256,
        learning_rate=1e-3,
        warmup_steps=None,
        weight_decay=0.1,
        betas=(0.9, 0.98),
        eps=1e-6,
        max_logit_scale=100.0,
        alpha=1.0,
        beta=0.5,
        semantic_distance="jaccard",
        ssl_weight=0.0,
        ssl_temperature=0.1,
        image_mean=None,
        image_std=None,
        device="auto",
        random_state=0,
        checkpoint_path=None,
        checkpoint_every=None,
        verbose=0,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.loss = loss
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.weight_decay = weight_decay
        self.betas = betas
        self.eps = eps
        self.max_logit_scale = max_logit_scale
        self.alpha = alpha
        self.beta = beta
        self.semantic_distance = semantic_distance
        self.ssl_weight = ssl_weight
        self.ssl_temperature = ssl_temperature
        self.image_mean = image_mean
        self.image_std = image_std
        self.device = device
        self.random_state = random_state
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.verbose = verbose

    # ------------------------------------------------------------------ set-up

    def _validate(self):
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {list(_LOSSES)}, got {self.loss!r}.")
        if not isinstance(self.n_steps, (int, np.integer)) or self.n_steps < 1:
            raise ValueError(f"n_steps must be a positive int, got {self.n_steps!r}.")
        if self.random_state is None or not isinstance(self.random_state, (int, np.integer)):
            raise ValueError(
                f"random_state must be an int (a training run is reproducible by its "
                f"seed), got {self.random_state!r}."
            )
        if self.loss != "simclr" and self.tokenizer is None:
            raise ValueError(f"loss={self.loss!r} needs a tokenizer; only 'simclr' is image-only.")

    def _warmup(self):
        if self.warmup_steps is None:
            return max(1, self.n_steps // 20)
        return self.warmup_steps

    def _setup(self):
        """Validate the parameters and build device, optimiser, heads (once per trainer)."""
        if getattr(self, "optimizer_", None) is not None:
            return
        self._validate()
        from ..models import resolve_device

        model = self.model
        visual = getattr(model, "visual", None)
        self.image_mean_ = self.image_mean or getattr(visual, "image_mean", None) or _OPENAI_MEAN
        self.image_std_ = self.image_std or getattr(visual, "image_std", None) or _OPENAI_STD
        self.device_ = resolve_device(self.device)
        model.to(self.device_)
        self.logit_bias_ = None
        if self.loss == "siglip" and getattr(model, "logit_bias", None) is None:
            # SigLIP's initialisation: t' = log 10, b = -10 (Zhai et al., 2023).
            self.logit_bias_ = torch.nn.Parameter(torch.tensor(-10.0, device=self.device_))
            with torch.no_grad():
                model.logit_scale.fill_(math.log(10.0))
        self.ssl_head_ = None
        extra = [self.logit_bias_] if self.logit_bias_ is not None else []
        if self.loss == "simclr" or self.ssl_weight:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.random_state))
                self.ssl_head_ = projection_head(_output_dim(model)).to(self.device_)
            extra += list(self.ssl_head_.parameters())
        self.optimizer_ = _make_adamw(
            _optimizer_groups(model, extra),
            self.learning_rate,
            self.weight_decay,
            tuple(self.betas),
            self.eps,
            self.device_,
        )
        self.semantic_distance_ = (
            resolve_semantic_distance(self.semantic_distance) if self.loss == "imsep" else None
        )
        self.step_ = 0
        self.loss_curve_ = []

    # ------------------------------------------------------------------ batches

    def _array_batches(self, images, captions):
        n = len(captions)
        if len(images) != n:
            raise ValueError(
                f"images and captions differ in length: {len(images)} images, {n} captions."
            )
        if n < 2:
            raise ValueError("Contrastive training needs at least 2 image-caption pairs.")
        size = min(self.batch_size, n)

        def sample(step, rng):
            index = np.sort(rng.choice(n, size=size, replace=False))
            return images[index], [captions[i] for i in index]

        return sample

    # ------------------------------------------------------------------ one step

    def _encode_images(self, pixels):
        encode = getattr(self.model, "encode_image", None)
        return encode(pixels) if encode is not None else self.model(pixels)

    def _ssl_term(self, pixels, features=None):
        """SimCLR between two random views, or the image (``features``) and one view."""
        rng = _view_generator(self.random_state, self.step_)
        if features is None:
            features = self._encode_images(augment(pixels, rng))
        view = augment(pixels, rng)
        return nt_xent_loss(
            self.ssl_head_(features),
            self.ssl_head_(self._encode_images(view)),
            self.ssl_temperature,
        )

    def _loss(self, images, captions):
        pixels = images_to_tensor(images, self.image_mean_, self.image_std_).to(self.device_)
        if self.loss == "simclr":
            return self._ssl_term(pixels)
        raw_image_features = self._encode_images(pixels)
        tokens = self.tokenizer(list(captions)).to(self.device_)
        image_features = F.normalize(raw_image_features, dim=-1)
        text_features = F.normalize(self.model.encode_text(tokens), dim=-1)
        scale = self.model.logit_scale.exp()
        if self.loss == "clip":
            loss = clip_loss(image_features, text_features, scale)
        elif self.loss == "siglip":
            bias = self.logit_bias_ if self.logit_bias_ is not None else self.model.logit_bias
            loss = siglip_loss(image_features, text_features, scale, bias)
        else:
            distance = self.semantic_distance_(list(captions))
            loss = imsep_loss(
                image_features, text_features, scale, distance, alpha=self.alpha, beta=self.beta
            )
        if self.ssl_weight:
            loss = loss + self.ssl_weight * self._ssl_term(pixels, raw_image_features)
        return loss

    def _step(self, images, captions):
        lr = cosine_schedule(self.step_, self.n_steps, self._warmup(), self.learning_rate)
        for group in self.optimizer_.param_groups:
            group["lr"] = lr
        self.model.train()
        loss = self._loss(images, captions)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"The loss became {float(loss)} at step {self.step_}; lower learning_rate."
            )
        self.optimizer_.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_.step()
        scale = getattr(self.model, "logit_scale", None)
        if scale is not None:
            with torch.no_grad():
                scale.clamp_(0, math.log(self.max_logit_scale))
        self.step_ += 1
        value = float(loss.detach())
        self.loss_curve_.append(value)
        return value, lr

    # ------------------------------------------------------------------ public

    def fit(self, images=None, captions=None, *, batch_source=None, n_steps=None):
        """Run the remaining steps (up to ``n_steps``, default the full budget).

        Parameters
        ----------
        images : array of shape (n, H, W, 3) uint8, or float tensor (n, 3, H, W)
        captions : list of str
            Matched pairs; each step samples ``batch_size`` of them without
            replacement.
        batch_source : callable, optional
            Instead of arrays: ``batch_source(step, rng) -> (images, captions)``
            with ``rng`` a numpy Generator seeded by ``(random_state, step)``,
            e.g. fresh :func:`~skvlm.datasets.make_scenes` every step.
        n_steps : int, optional
            Stop after this many steps in total (to train in pieces); the schedule
            still follows the full budget ``self.n_steps``.

        Returns
        -------
        self
        """
        self._setup()
        if batch_source is None:
            if images is None or captions is None:
                raise ValueError("Pass images and captions, or a batch_source callable.")
            batch_source = self._array_batches(images, list(captions))
        stop = self.n_steps if n_steps is None else min(n_steps, self.n_steps)
        steps = range(self.step_, stop)
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=stop, initial=self.step_, desc=f"{self.loss} training", unit="step")
        for step in steps:
            batch_images, batch_captions = batch_source(
                step, _batch_generator(self.random_state, step)
            )
            loss, lr = self._step(batch_images, batch_captions)
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
            if self.checkpoint_every and self.step_ % self.checkpoint_every == 0:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        if self.checkpoint_path is not None:
            self.save_checkpoint()
        self.model.eval()
        return self

    def state_dict(self):
        """Everything needed to continue the run: weights, optimiser, step, curve."""
        self._setup()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer_.state_dict(),
            "logit_bias": None if self.logit_bias_ is None else self.logit_bias_.detach().cpu(),
            "ssl_head": None if self.ssl_head_ is None else self.ssl_head_.state_dict(),
            "step": self.step_,
            "loss_curve": list(self.loss_curve_),
            "random_state": self.random_state,
            "n_steps": self.n_steps,
            "loss": self.loss,
        }

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict`; the next :meth:`fit` continues from its step."""
        self._setup()
        for key in ("random_state", "n_steps", "loss"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"The checkpoint was made with {key}={state[key]!r}, this trainer has "
                    f"{key}={getattr(self, key)!r}; resuming would not continue the same run."
                )
        self.model.load_state_dict(state["model"])
        self.optimizer_.load_state_dict(state["optimizer"])
        if state.get("ssl_head") is not None:
            self.ssl_head_.load_state_dict(state["ssl_head"])
        if state["logit_bias"] is not None:
            with torch.no_grad():
                self.logit_bias_.copy_(state["logit_bias"])
        self.step_ = int(state["step"])
        self.loss_curve_ = list(state["loss_curve"])
        return self

    def save_checkpoint(self, path=None):
        """Write :meth:`state_dict` to ``path`` (default ``checkpoint_path``) atomically."""
        path = Path(path or self.checkpoint_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path=None):
        """Resume from a checkpoint written by :meth:`save_checkpoint`."""
        path = Path(path or self.checkpoint_path)
        self._setup()
        state = torch.load(path, map_location=self.device_, weights_only=True)
        return self.load_state_dict(state)
