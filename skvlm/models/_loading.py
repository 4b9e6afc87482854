"""Lazy model loading into one process-wide, thread-safe cache.

The cache is the only global state in skvlm: estimators hold a handle into it, so
``clone`` and unpickling never reload weights that are already in memory.
"""

import contextlib
import hashlib
import logging
import math
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._hub import check_weights_reachable
from ._registry import (
    CheckpointError,
    WeightsUnavailableError,
    _register_open_clip_configs,
    _resolve_timm_pretrained,
    architecture_signature,
    check_model_name,
    image_config,
    image_model_names,
    is_shared_architecture,
    open_clip_config,
    resolve_device,
    resolve_precision,
    resolve_pretrained,
    resolve_skvlm_image_pretrained,
    shared_config,
    skvlm_model_names,
    vocab_words,
)

_RANDOM_INIT_SEED = 0
_NPZ_HINT = (
    "skvlm reads .npz files only as big_vision SigLIP weights, for open_clip SigLIP "
    "models (a timm image tower); save other weights with safetensors.torch.save_file."
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


def _torch_dtype(precision):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _cast_weights(module, precision):
    """All of ``module``'s float tensors in ``precision`` (timm and SharedCLIP towers)."""
    if precision != "fp32":
        module.to(_torch_dtype(precision))
    return module


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


def _compact_tokenizer(pretrained, context_length):
    """The tiny models' tokenizer: the vocabulary (and hash-bucket count) a weights file
    was trained with, else the package's word list and the current default."""
    from ._tokenizer import HASH_BUCKETS, CompactTokenizer

    metadata = _weights_metadata(pretrained)
    vocab = metadata.get("skvlm_vocab")
    if vocab:
        # Files from before the hashed buckets carry a vocabulary but no bucket count.
        buckets = int(metadata.get("skvlm_hash_buckets", 0))
        return CompactTokenizer(
            vocab.split("\n"), context_length=context_length, hash_buckets=buckets
        )
    return CompactTokenizer(vocab_words(), context_length=context_length, hash_buckets=HASH_BUCKETS)


def _weights_metadata(path):
    """The metadata of a safetensors weights file ({} for none or another format)."""
    if path is None or not _is_local_file(path):
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        if not _is_safetensors(path):
            return {}
        with safe_open(path, framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"Cannot read the safetensors checkpoint {str(path)!r}: {exc}"
        ) from None


def _is_safetensors(path):
    """True when the file starts as safetensors does: an 8-byte header length, then '{'.

    The content, not the file name, picks the reader: a safetensors file named
    ``.pt`` is not a pickle, and a ``torch.save`` file named ``.safetensors`` still
    goes through the restricted unpickler.
    """
    with open(path, "rb") as handle:
        return handle.read(9)[8:9] == b"{"


def _load_state_dict(path):
    """Tensors of a local checkpoint, read without ever running code from the file.

    safetensors files hold raw tensors; anything else goes through
    ``torch.load(weights_only=True)``, whose restricted unpickler refuses the
    arbitrary callables a crafted pickle would need to execute code.
    """
    path = str(path)
    try:
        if Path(path).stat().st_size == 0:
            raise CheckpointError(f"Cannot read the checkpoint {path!r}: the file is empty.")
        safetensors = _is_safetensors(path)
    except OSError as exc:
        raise CheckpointError(f"Cannot read the checkpoint {path!r}: {exc}") from None
    if safetensors:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"Cannot read the safetensors checkpoint {path!r}: {exc}"
            ) from None
    else:
        _refuse_foreign_archive(path)
        state = _torch_load_weights(path)
    return _unwrap_state_dict(state, path)


def _refuse_foreign_archive(path):
    """Zip files torch.load must not (TorchScript) or cannot (numpy .npz) read."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(name.endswith("/constants.pkl") for name in names):
        raise CheckpointError(
            f"Refusing to load {path!r}: it is a TorchScript archive (such as OpenAI's "
            "original CLIP .pt files), and loading one runs the code stored in it. "
            "Use the open_clip tag instead (pretrained='openai'), or convert it once in "
            "a trusted session: save torch.jit.load(path).state_dict() with "
            "safetensors.torch.save_file."
        )
    if names and all(name.endswith(".npy") for name in names):
        raise CheckpointError(f"Cannot load {path!r}: it is a numpy .npz archive. {_NPZ_HINT}")


def _torch_load_weights(path):
    import torch

    try:
        # A file object, not the path: torch.load hands any path ending in
        # .safetensors to safetensors, whatever the file holds.
        with open(path, "rb") as handle:
            return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if reason.startswith("Unsupported operand"):  # not a pickle at all
            raise CheckpointError(
                f"Cannot read the checkpoint {path!r}: it is neither a safetensors file "
                f"nor a torch.save checkpoint ({reason})."
            ) from None
        raise CheckpointError(
            f"Refusing to load {path!r}: it is not a plain tensor checkpoint, and "
            "skvlm only loads checkpoints with torch.load(weights_only=True), which "
            f"cannot run code stored in the file ({reason}). "
            "Convert it to .safetensors or save only the state_dict."
        ) from None
    except Exception as exc:  # noqa: BLE001
        # On bytes that are not a checkpoint the restricted unpickler fails with
        # whatever its parser hits (KeyError, IndexError, RuntimeError, EOFError, ...).
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CheckpointError(
            f"Cannot read the checkpoint {path!r}: it is neither a safetensors file nor "
            f"a readable torch.save checkpoint ({type(exc).__name__}: {detail})."
        ) from None


def _unpickler_reason(exc):
    """The line of torch's weights_only error that says what it refused."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(exc).splitlines()]
    reasons = [line for line in lines if line and not line.startswith(boilerplate)]
    return (reasons or lines or [""])[0][:200]


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
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def _check_state_dict(module, state, path, name):
    """Raise CheckpointError unless ``state`` has exactly ``module``'s tensors and shapes.

    Each tensor must also be dense, of the model's kind (floating point, complex or
    integer: fp16 and bf16 load into fp32 weights) and, where the model's own
    tensor is finite, free of NaN and infinity: a NaN weight makes every embedding
    through it NaN.
    """
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
    for key, tensor in expected.items():
        problem = _tensor_problem(state[key], tensor)
        if problem:
            raise CheckpointError(
                f"Checkpoint {path!r} cannot be loaded into {name!r}: tensor {key!r} {problem}."
            )


def _finite_flags(tensors):
    """Whether each float tensor is free of NaN and infinity: one pass over each.

    The max-abs norm is infinite exactly when a value is, and NaN when one is (it
    never overflows, unlike a sum), and needs no element-wise mask.
    """
    import torch

    flags = [True] * len(tensors)
    filled = [i for i, t in enumerate(tensors) if t.numel()]  # an empty tensor is finite
    if filled:
        norms = torch._foreach_norm([tensors[i].detach() for i in filled], float("inf"))
        finite = torch.isfinite(torch.stack([n.float().cpu() for n in norms])).tolist()
        for i, ok in zip(filled, finite):
            flags[i] = ok
    return flags


def _float_tensors(module):
    return {key: t for key, t in module.state_dict().items() if t.is_floating_point()}


def _check_finite_after_load(module, finite_before, path, name):
    """Raise CheckpointError for a tensor the file made NaN or infinite (as the model holds it)."""
    import torch

    after = _float_tensors(module)
    keys = [key for key in after if finite_before.get(key)]
    for key, finite in zip(keys, _finite_flags([after[key] for key in keys])):
        if not finite:
            value = after[key]
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"Checkpoint {path!r} cannot be loaded into {name!r}: tensor {key!r} holds "
                f"{bad} NaN or infinite value(s) out of {value.numel()} (as {value.dtype}), "
                "which would make the embeddings NaN."
            )


def _tensor_problem(value, reference):
    """Why a checkpoint tensor cannot replace ``reference``, or None."""
    import torch

    if value.is_meta:
        return "holds no data (it is a meta tensor)"
    if value.layout != torch.strided:
        return f"is a {value.layout} tensor; only dense tensors load"
    if (value.is_floating_point(), value.is_complex()) != (
        reference.is_floating_point(),
        reference.is_complex(),
    ):
        return f"is {value.dtype} in the file but {reference.dtype} in the model"
    return None  # values are checked after the copy, in one pass (_check_finite_after_load)


def _load_checked(module, path, name, state=None):
    """Load a local checkpoint into ``module``, checking every tensor's shape and kind
    before the copy and, after it, that the file made no finite tensor NaN or infinite
    (checked as the model holds it: float64 values past float32's range, or past
    fp16's, turn into infinities when copied in). On error ``module`` is discarded."""
    state = _load_state_dict(path) if state is None else state
    _check_state_dict(module, state, path, name)
    before = _float_tensors(module)
    finite_before = dict(zip(before, _finite_flags(list(before.values()))))
    module.load_state_dict(state, strict=True)
    _check_finite_after_load(module, finite_before, path, name)


def _file_signature(pretrained):
    """What changes whenever a local checkpoint is rewritten; None for tags and None.

    The inode and ctime change on any rewrite, even one that restores the size and
    mtime (cp -p, rsync -t, a write within one timestamp tick); utime cannot set ctime.
    """
    if not _is_local_file(pretrained):
        return None
    stat = Path(str(pretrained)).stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns


def _is_local_file(pretrained):
    return isinstance(pretrained, (str, Path)) and Path(str(pretrained)).is_file()


def _adapt_open_clip_state(model, state, path):
    """open_clip's own fixes for older or third-party layouts (no file access).

    Each fix runs only where open_clip's assumptions hold (same widths, a square
    patch grid), so a checkpoint of another architecture reaches the shape check
    with the shapes it has in the file instead of failing inside open_clip.
    """
    from open_clip.factory import convert_state_dict, resize_pos_embed, resize_text_pos_embed

    try:
        state = convert_state_dict(model, state)
    except Exception as exc:  # noqa: BLE001 - third-party key layouts, converted by open_clip
        raise CheckpointError(
            f"open_clip cannot convert the third-party checkpoint {path!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    state = dict(state)  # the resizes below replace entries in place
    scale = state.get("logit_scale")
    if scale is not None and scale.ndim != model.logit_scale.ndim and scale.numel() == 1:
        state["logit_scale"] = scale.reshape(model.logit_scale.shape)
    # Text towers from newer transformers no longer register position_ids.
    position_ids = "text.transformer.embeddings.position_ids"
    if position_ids in state and position_ids not in model.state_dict():
        del state[position_ids]
    expected = model.state_dict()
    visual = state.get("visual.positional_embedding")
    if hasattr(model.visual, "grid_size") and _resizable(
        visual, expected.get("visual.positional_embedding"), extra_tokens=1
    ):
        resize_pos_embed(state, model)
    text_key = "text.positional_embedding"
    if "positional_embedding" in state:
        text_key = "positional_embedding"
    if _resizable(state.get(text_key), expected.get(text_key)):
        resize_text_pos_embed(state, model)
    return state


def _resizable(old, new, extra_tokens=None):
    """Whether open_clip can interpolate position embedding ``old`` to ``new``'s length."""
    if old is None or new is None or old.ndim != 2 or new.ndim != 2:
        return False
    if not old.is_floating_point() or old.shape[1] != new.shape[1]:
        return False
    if extra_tokens is None:
        return True
    side = math.isqrt(max(old.shape[0] - extra_tokens, 0))
    return side > 0 and side * side == old.shape[0] - extra_tokens


def _load_big_vision(model, path, name):
    """big_vision (SigLIP) numpy weights, read by open_clip with ``np.load``.

    ``np.load``'s default ``allow_pickle=False`` cannot run code; open_clip copies
    each array into the timm image tower and the text tower it expects.
    """
    import open_clip

    if not hasattr(model.visual, "trunk"):
        raise CheckpointError(f"Cannot load {path!r} into {name!r}: {_NPZ_HINT}")
    before = _float_tensors(model)
    finite_before = dict(zip(before, _finite_flags(list(before.values()))))
    try:
        open_clip.load_checkpoint(model, path)
    except Exception as exc:  # noqa: BLE001 - open_clip's converter indexes the arrays blindly
        raise CheckpointError(
            f"Cannot load the big_vision checkpoint {path!r} into {name!r}: "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    _check_finite_after_load(model, finite_before, path, name)


def _build_open_clip(name, pretrained, precision="fp32"):
    import open_clip

    _register_open_clip_configs()
    kwargs = {}
    tokenizer = None
    if name in skvlm_model_names():
        # The compact vocabulary decides the token table's size; a shipped file
        # carries the vocabulary it was trained with.
        config = open_clip_config(name)
        tokenizer = _compact_tokenizer(pretrained, config["text_cfg"]["context_length"])
        kwargs["text_cfg"] = {**config["text_cfg"], "vocab_size": tokenizer.vocab_size}
    local_file = _is_local_file(pretrained)
    # Offline: fail in seconds, not minutes, or read the local cache without retries.
    hub = contextlib.nullcontext() if local_file else check_weights_reachable(name, pretrained)
    with _seeded_init():
        try:
            # A local file is loaded by skvlm itself (safely, with a shape check);
            # open_clip only fetches and loads its own hub tags.
            with _quiet_random_init_warning(), hub:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name,
                    pretrained=None if local_file else pretrained,
                    precision=precision,
                    **kwargs,
                )
        except (OSError, RuntimeError) as exc:
            if pretrained is not None and not Path(str(pretrained)).exists():
                raise WeightsUnavailableError(
                    f"Could not fetch the pretrained weights {pretrained!r} of {name!r}: "
                    f"{type(exc).__name__}: {exc}. Without network access, "
                    f"download the checkpoint elsewhere and pass its local path, e.g. "
                    f"CLIPEncoder(model={name!r}, pretrained='/path/to/checkpoint.safetensors')."
                ) from exc
            raise
    if local_file:
        if str(pretrained).endswith((".npz", ".npy")):
            _load_big_vision(model, str(pretrained), name)
        else:
            state = _adapt_open_clip_state(model, _load_state_dict(pretrained), pretrained)
            _load_checked(model, pretrained, name, state)
    if tokenizer is None:
        tokenizer = open_clip.get_tokenizer(name)
    visual = model.visual
    image_size = getattr(visual, "image_size", (224, 224))
    image_size = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size,) * 2
    embed_dim = (
        int(model.text_projection.shape[-1])
        if hasattr(model, "text_projection") and model.text_projection is not None
        else int(visual.output_dim)
    )
    return model, tokenizer, preprocess, embed_dim, image_size


def _build_shared(name, pretrained, precision="fp32"):
    from open_clip.transform import image_transform

    from .shared_clip import build_shared_clip

    config = shared_config(name)
    tokenizer = _compact_tokenizer(pretrained, config["text_cfg"]["context_length"])
    config = {**config, "text_cfg": {**config["text_cfg"], "vocab_size": tokenizer.vocab_size}}
    with _seeded_init():
        model = build_shared_clip(config)
    if pretrained is not None:
        _load_checked(model, pretrained, name)
    _cast_weights(model, precision)
    image_size = config["vision_cfg"]["image_size"]
    preprocess = image_transform(image_size, is_train=False)
    return model, tokenizer, preprocess, int(config["embed_dim"]), (image_size, image_size)


def _build_skvlm_image(name, pretrained, precision="fp32"):
    """skvlm's own image-only models (``skvlm-tiny-ssl``): an open_clip VisionTransformer."""
    import open_clip.model
    from open_clip.transform import image_transform

    config = image_config(name)
    with _seeded_init():
        model = open_clip.model._build_vision_tower(config["embed_dim"], config["vision_cfg"])
    if pretrained is not None:
        _load_checked(model, pretrained, name)
    _cast_weights(model, precision)
    image_size = config["vision_cfg"]["image_size"]
    preprocess = image_transform(image_size, is_train=False)
    return model, None, preprocess, int(config["embed_dim"]), (image_size, image_size)


def _build_timm(name, pretrained, precision="fp32"):
    try:
        import timm
    except ImportError as exc:
        raise ImportError("ImageEncoder needs timm: pip install 'skvlm[timm]'.") from exc
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
    hub = check_weights_reachable(name, use_pretrained, kind="timm")  # offline: seconds
    with _seeded_init(), hub:
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
    _cast_weights(model, precision)
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
