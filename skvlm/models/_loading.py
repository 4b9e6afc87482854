"""Lazy model loading into one process-wide, thread-safe cache.

The cache is the only global state in skvlm: estimators hold a handle into it, so
``clone`` and unpickling never reload weights that are already in memory.
"""

import contextlib
import hashlib
import logging
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ._registry import (
    CheckpointError,
    WeightsUnavailableError,
    _register_open_clip_configs,
    check_model_name,
    is_shared_architecture,
    open_clip_config,
    resolve_device,
    resolve_precision,
    resolve_pretrained,
    shared_config,
    skvlm_model_names,
    vocab_words,
)

_RANDOM_INIT_SEED = 0
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
        In eval mode, on ``device``; weights kept in fp32, half precision is autocast.
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
        Hash of the architecture, the weights' content and the preprocessing, used
        to content-address cached embeddings.
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
    fingerprint: str
    kind: str = "clip"
    extra: dict = field(default_factory=dict)

    def autocast(self):
        """fp16/bf16 autocast on the model's device; a no-op for fp32."""
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def _state_fingerprint(module, *parts):
    """Hash of a module's parameters and buffers (bytes) plus descriptive parts."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(repr(part).encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _seeded_init():
    """Deterministic random init without leaving a trace on torch's global RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_INIT_SEED)
        yield


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record):
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _quiet_random_init_warning():
    """Silence open_clip's "initialized randomly" log line while skvlm builds a model.

    skvlm asks for the random init on purpose: either ``pretrained=None`` was requested,
    or a local checkpoint is about to be loaded by :func:`_load_checked`.
    """
    root = logging.getLogger()
    quiet = _DropRandomInitWarning()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _describe_preprocess(preprocess):
    return repr(preprocess)


def _compact_tokenizer(words, context_length):
    from ._tokenizer import CompactTokenizer

    return CompactTokenizer(words, context_length=context_length)


def _weights_vocab(path):
    """The vocabulary stored in a shipped safetensors file's metadata, if any."""
    if path is None or Path(path).suffix != ".safetensors":
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"Cannot read the safetensors checkpoint {str(path)!r}: {exc}") from None
    vocab = metadata.get("skvlm_vocab")
    return vocab.split("\n") if vocab else None


def _load_state_dict(path):
    """Tensors of a local checkpoint, read without ever running code from the file.

    ``.safetensors`` files hold raw tensors; anything else goes through
    ``torch.load(weights_only=True)``, whose restricted unpickler refuses the
    arbitrary callables a crafted pickle would need to execute code.
    """
    import torch

    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"Cannot read the safetensors checkpoint {path!r}: {exc}") from None
    else:
        if _is_torchscript_archive(path):
            raise CheckpointError(
                f"Refusing to load {path!r}: it is a TorchScript archive (such as OpenAI's "
                "original CLIP .pt files), and loading one runs the code stored in it. "
                "Use the open_clip tag instead (pretrained='openai'), or convert it once in "
                "a trusted session: save torch.jit.load(path).state_dict() with "
                "safetensors.torch.save_file."
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(
                f"Refusing to load {path!r}: it is not a plain tensor checkpoint, and "
                "skvlm only loads checkpoints with torch.load(weights_only=True), which "
                f"cannot run code stored in the file ({str(exc).splitlines()[0][:200]}). "
                "Convert it to .safetensors or save only the state_dict."
            ) from None
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(f"Cannot read the checkpoint {path!r}: {exc}") from None
    return _unwrap_state_dict(state, path)


def _is_torchscript_archive(path):
    """True for a torch.jit.save zip (it holds serialized code next to the tensors)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _unwrap_state_dict(state, path):
    """The name -> tensor mapping inside the usual training-checkpoint wrappers."""
    import torch

    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise CheckpointError(
            f"{path!r} does not hold a state_dict (a mapping of names to tensors)."
        )
    if state and all(key.startswith("module.") for key in state):  # saved from DataParallel
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _check_state_dict(module, state, path, name):
    """Raise CheckpointError unless ``state`` has exactly ``module``'s tensors and shapes."""
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key in state and tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"Checkpoint {path!r} does not fit {name!r}: tensor {key!r} has shape "
                f"{tuple(state[key].shape)} in the file but {tuple(tensor.shape)} in the model."
            )
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) missing from the file, first {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), first {unexpected[0]!r}")
        raise CheckpointError(f"Checkpoint {path!r} does not fit {name!r}: {'; '.join(parts)}.")


def _load_checked(module, path, name, state=None):
    """Load a local checkpoint into ``module`` after checking every tensor's shape."""
    state = _load_state_dict(path) if state is None else state
    _check_state_dict(module, state, path, name)
    module.load_state_dict(state, strict=True)


def _is_local_file(pretrained):
    return isinstance(pretrained, (str, Path)) and Path(str(pretrained)).is_file()


def _adapt_open_clip_state(model, state):
    """open_clip's own fixes for older or third-party layouts (no file access)."""
    from open_clip.factory import convert_state_dict, resize_pos_embed, resize_text_pos_embed

    state = convert_state_dict(model, state)
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    # Text towers from newer transformers no longer register position_ids.
    position_ids = "text.transformer.embeddings.position_ids"
    if position_ids in state and position_ids not in model.state_dict():
        del state[position_ids]
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    return state


def _build_open_clip(name, pretrained):
    import open_clip

    _register_open_clip_configs()
    kwargs = {}
    tokenizer = None
    if name in skvlm_model_names():
        # The compact vocabulary decides the token table's size; a shipped file
        # carries the vocabulary it was trained with.
        words = _weights_vocab(pretrained) or vocab_words()
        config = open_clip_config(name)
        tokenizer = _compact_tokenizer(words, config["text_cfg"]["context_length"])
        kwargs["text_cfg"] = {**config["text_cfg"], "vocab_size": tokenizer.vocab_size}
    local_file = _is_local_file(pretrained)
    with _seeded_init():
        try:
            # A local file is loaded by skvlm itself (safely, with a shape check);
            # open_clip only fetches and loads its own hub tags.
            with _quiet_random_init_warning():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=None if local_file else pretrained, **kwargs
                )
        except (OSError, RuntimeError) as exc:
            if pretrained is not None and not Path(str(pretrained)).exists():
                raise WeightsUnavailableError(
                    f"Could not fetch the pretrained weights {pretrained!r} of {name!r}: "
                    f"{type(exc).__name__}: {str(exc)[:200]}. Without network access, "
                    f"download the checkpoint elsewhere and pass its local path, e.g. "
                    f"CLIPEncoder(model={name!r}, pretrained='/path/to/checkpoint.safetensors')."
                ) from exc
            raise
    if local_file:
        if str(pretrained).endswith((".npz", ".npy")):
            # big_vision (SigLIP) numpy weights: open_clip reads them with np.load,
            # whose default allow_pickle=False cannot run code.
            open_clip.load_checkpoint(model, str(pretrained))
        else:
            state = _adapt_open_clip_state(model, _load_state_dict(pretrained))
            _load_checked(model, pretrained, name, state)
    if tokenizer is None:
        tokenizer = open_clip.get_tokenizer(name)
    visual = model.visual
    image_size = getattr(visual, "image_size", (224, 224))
    image_size = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size,) * 2
    embed_dim = int(model.text_projection.shape[-1]) if hasattr(model, "text_projection") and model.text_projection is not None else int(visual.output_dim)
    return model, tokenizer, preprocess, embed_dim, image_size


def _build_shared(name, pretrained):
    from open_clip.transform import image_transform

    from .shared_clip import build_shared_clip

    config = shared_config(name)
    words = _weights_vocab(pretrained) or vocab_words()
    tokenizer = _compact_tokenizer(words, config["text_cfg"]["context_length"])
    config = {**config, "text_cfg": {**config["text_cfg"], "vocab_size": tokenizer.vocab_size}}
    with _seeded_init():
        model = build_shared_clip(config)
    if pretrained is not None:
        _load_checked(model, pretrained, name)
    image_size = config["vision_cfg"]["image_size"]
    preprocess = image_transform(image_size, is_train=False)
    return model, tokenizer, preprocess, int(config["embed_dim"]), (image_size, image_size)


def _build_timm(name, pretrained):
    try:
        import timm
    except ImportError as exc:
        raise ImportError(
            "ImageEncoder needs timm: pip install 'skvlm[timm]'."
        ) from exc
    from timm.data import create_transform, resolve_data_config

    kwargs = {"num_classes": 0}
    local_file = _is_local_file(pretrained)
    use_pretrained = bool(pretrained) and not local_file
    if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.5)
        from ._registry import ModelNotFound

        raise ModelNotFound(
            f"Unknown timm model {name!r}." + (f" Close matches: {close}." if close else "")
        )
    with _seeded_init():
        try:
            model = timm.create_model(name, pretrained=use_pretrained, **kwargs)
        except (OSError, RuntimeError) as exc:
            if use_pretrained:
                raise WeightsUnavailableError(
                    f"Could not fetch the pretrained weights of timm model {name!r}: "
                    f"{type(exc).__name__}. Without network access pass a local file: "
                    f"ImageEncoder(model={name!r}, pretrained='/path/to/weights.safetensors')."
                ) from exc
            raise
    if local_file:
        _load_checked(model, pretrained, name, _timm_backbone_state(model, pretrained))
    config = resolve_data_config({}, model=model)
    preprocess = create_transform(**config, is_training=False)
    image_size = tuple(config["input_size"][1:])
    return model, None, preprocess, int(model.num_features), image_size


def _timm_backbone_state(model, path):
    """A timm checkpoint's tensors minus its classifier head (skvlm uses pooled features)."""
    state = _load_state_dict(path)
    heads = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    expected = model.state_dict()
    return {
        key: value
        for key, value in state.items()
        if key in expected or not any(key.startswith(head + ".") for head in heads)
    }


def _key_lock(key):
    with _CACHE_LOCK:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def load_model(model="ViT-B-32", pretrained="default", device="auto", precision="auto", kind="clip"):
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
        Half precisions are autocast; weights stay in fp32.
    kind : {"clip", "timm"}

    Examples
    --------
    >>> loaded = load_model("skvlm-tiny", pretrained=None, device="cpu")
    >>> loaded.embed_dim, loaded.image_size, loaded.precision
    (64, (32, 32), 'fp32')
    >>> load_model("skvlm-tiny", pretrained=None, device="cpu") is loaded
    True
    """
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    if kind == "timm":
        resolved = pretrained if not isinstance(pretrained, Path) else str(pretrained)
        if resolved == "default":
            resolved = True
    else:
        check_model_name(model)
        resolved = resolve_pretrained(model, pretrained)
    key = (kind, model, resolved, str(device), precision)
    with _key_lock(key):
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        if kind == "timm":
            builder = _build_timm
        elif is_shared_architecture(model):
            builder = _build_shared
        else:
            builder = _build_open_clip
        module, tokenizer, preprocess, embed_dim, image_size = builder(model, resolved)
        module.eval().requires_grad_(False)
        fingerprint = _state_fingerprint(
            module, kind, model, _describe_preprocess(preprocess), precision
        )
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
            fingerprint=fingerprint,
            kind=kind,
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
