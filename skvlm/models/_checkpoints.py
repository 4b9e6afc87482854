"""Reading and checking local checkpoint files, without ever running code from them.

safetensors files are read as raw tensors, anything else through
``torch.load(weights_only=True)``; TorchScript and numpy archives are refused with a
reason. A state dict is checked against the model it is loaded into (names, shapes,
kinds) before the copy and, after it, for tensors the file made NaN or infinite.
"""

import pickle
from pathlib import Path

from ._registry import CheckpointError

_NPZ_HINT = (
    "skvlm reads .npz files only as big_vision SigLIP weights, for open_clip SigLIP "
    "models (a timm image tower); save other weights with safetensors.torch.save_file."
)


def _is_local_file(pretrained):
    return isinstance(pretrained, (str, Path)) and Path(str(pretrained)).is_file()


def _file_signature(pretrained):
    """What changes whenever a local checkpoint is rewritten; None for tags and None.

    The inode and ctime change on any rewrite, even one that restores the size and
    mtime (cp -p, rsync -t, a write within one timestamp tick); utime cannot set ctime.
    """
    if not _is_local_file(pretrained):
        return None
    stat = Path(str(pretrained)).stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns


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


def _finite_before_load(module):
    """key -> whether the tensor must be finite once loaded: every float parameter
    (whatever it holds before the load: random, or unset when the init was skipped),
    and each float buffer that is finite now (a -inf mask may be meant)."""
    floats = _float_tensors(module)
    buffers = [key for key in dict(module.named_buffers()) if key in floats]
    finite = dict(zip(buffers, _finite_flags([floats[key] for key in buffers])))
    return {key: finite.get(key, True) for key in floats}


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


def _load_checked(module, path, name, state=None):
    """Load a local checkpoint into ``module``, checking every tensor's shape and kind
    before the copy and, after it, that the file made no finite tensor NaN or infinite
    (checked as the model holds it: float64 values past float32's range, or past
    fp16's, turn into infinities when copied in). On error ``module`` is discarded."""
    state = _load_state_dict(path) if state is None else state
    _check_state_dict(module, state, path, name)
    finite_before = _finite_before_load(module)
    module.load_state_dict(state, strict=True)
    _check_finite_after_load(module, finite_before, path, name)
