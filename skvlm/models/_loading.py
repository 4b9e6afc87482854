"""Lazy model loading into one process-wide, thread-safe cache.

The cache is the only global state in skvlm: estimators hold a handle into it, so
``clone`` and unpickling never reload weights that are already in memory.
"""

import contextlib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._builders import (
    _build_open_clip,
    _build_shared,
    _build_skvlm_image,
    _build_timm,
    _torch_dtype,
)
from ._checkpoints import (
    _file_signature,
    _load_state_dict,  # noqa: F401 - read from here by older callers
)
from ._registry import (
    _resolve_timm_pretrained,
    architecture_signature,
    check_model_name,
    image_model_names,
    is_shared_architecture,
    resolve_device,
    resolve_precision,
    resolve_pretrained,
    resolve_skvlm_image_pretrained,
)

_CACHE = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS = {}


@dataclass
class LoadedModel:
    """A model in eval mode plus what is needed to feed it.

    Attributes
    ----------
    name, pretrained : str, str or None
        The model name and the resolved weights (tag, file path, or None).
    model : torch.nn.Module
        In eval mode, on ``device``, its weights in ``precision`` (for open_clip models
        the layers that need fp32, such as layer norms, stay fp32, as open_clip's own
        ``precision`` does). Feed it float inputs of :attr:`dtype`.
    tokenizer : callable or None
        list of str -> LongTensor (n, context_length); None for image-only models.
    preprocess : callable
        PIL image -> CHW float tensor (the evaluation transform).
    device : torch.device
    precision : {"fp32", "fp16", "bf16"}
    embed_dim : int
    image_size : tuple of int
        (height, width) the image tower expects.
    fingerprint : str
        Hash of the architecture, the weights' content, the preprocessing and the
        precision; computed on first use (it reads every weight).
    source_signature : tuple
        The registered architecture config and, for a local checkpoint, its (size,
        mtime, inode, ctime) when it was read: a config registered anew under the
        name, or a file rewritten since, is loaded again instead of served from the
        cache.
    """

    name: str
    pretrained: Any
    model: Any
    tokenizer: Callable
    preprocess: Callable
    device: Any
    precision: str
    embed_dim: int
    image_size: tuple
    kind: str = "clip"
    extra: dict = field(default_factory=dict)
    source_signature: Any = None

    @property
    def fingerprint(self):
        if "fingerprint" not in self.extra:
            self.extra["fingerprint"] = _state_fingerprint(
                self.model,
                self.kind,
                self.name,
                _describe_preprocess(self.preprocess),
                self.precision,
            )
        return self.extra["fingerprint"]

    @property
    def dtype(self):
        """The torch dtype of the model's float inputs (its weights' precision)."""
        return _torch_dtype(self.precision)

    def autocast(self):
        """A no-op kept for callers of older versions: the weights are already cast."""
        return contextlib.nullcontext()


def _state_fingerprint(module, *parts):
    """Hash of a module's parameters and buffers (bytes) plus descriptive parts."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(repr(part).encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        # Raw bytes through a uint8 view: numpy has no bf16.
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _describe_preprocess(preprocess):
    return repr(preprocess)


def _key_lock(key):
    with _CACHE_LOCK:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def load_model(
    model="ViT-B-32", pretrained="default", device="auto", precision="auto", kind="clip"
):
    """Return the :class:`LoadedModel` for a spec, loading it on first use.

    The cache is keyed by (kind, model, resolved pretrained, device, precision) and is
    safe to use from several threads: a model is built once even when many threads
    ask for it at the same time.

    Parameters
    ----------
    model : str
        An open_clip architecture name (``skvlm.models.list_models()``), skvlm's own
        (``"skvlm-tiny"``, ``"skvlm-tiny-shared"``), or a timm name when ``kind="timm"``.
    pretrained : "default", str, path or None
        An open_clip tag, a local checkpoint file, ``None`` (random init, seed 0) or
        ``"default"`` (see :func:`skvlm.models.resolve_pretrained`).
    device : "auto", "cpu", "cuda", "cuda:N"
    precision : "auto", "fp32", "fp16", "bf16"
        The weights' precision (see :func:`skvlm.models.resolve_precision`).
    kind : {"clip", "timm"}

    Examples
    --------
    >>> loaded = load_model("skvlm-tiny", pretrained=None, device="cpu", precision="fp32")
    >>> loaded.embed_dim, loaded.image_size, loaded.precision
    (64, (32, 32), 'fp32')
    >>> load_model("skvlm-tiny", pretrained=None, device="cpu", precision="fp32") is loaded
    True
    """
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    if kind == "timm" and model in image_model_names():
        resolved = resolve_skvlm_image_pretrained(model, pretrained)
    elif kind == "timm":
        resolved = _resolve_timm_pretrained(pretrained)
    else:
        check_model_name(model)
        resolved = resolve_pretrained(model, pretrained)
    key = (kind, model, resolved, str(device), precision)
    signature = (_file_signature(resolved), architecture_signature(model, kind))
    with _key_lock(key):
        cached = _CACHE.get(key)
        # A checkpoint rewritten in place keeps its path, a re-registered config its
        # name: serving the old model would file its embeddings under the new key.
        if cached is not None and cached.source_signature == signature:
            return cached
        if kind == "timm" and model in image_model_names():
            builder = _build_skvlm_image
        elif kind == "timm":
            builder = _build_timm
        elif is_shared_architecture(model):
            builder = _build_shared
        else:
            builder = _build_open_clip
        module, tokenizer, preprocess, embed_dim, image_size = builder(model, resolved, precision)
        module.eval().requires_grad_(False)
        loaded = LoadedModel(
            name=model,
            pretrained=resolved,
            model=module.to(device),
            tokenizer=tokenizer,
            preprocess=preprocess,
            device=device,
            precision=precision,
            embed_dim=embed_dim,
            image_size=image_size,
            kind=kind,
            source_signature=signature,
        )
        _CACHE[key] = loaded
        return loaded


def clear_model_cache():
    """Drop every loaded model (frees memory; the next call reloads)."""
    with _CACHE_LOCK:
        # The per-key locks stay: a thread may be building a model right now, and a
        # fresh lock for its key would let a second thread build the same model.
        _CACHE.clear()


def cached_models():
    """The keys of the models currently held in the cache."""
    with _CACHE_LOCK:
        return list(_CACHE)
