"""Model names, pretrained tags, devices and precisions: resolution only, no loading.

Lookups go through registries, as open_clip's do: skvlm's own configs are added to
open_clip's config registry (``open_clip.add_model_config``), so ``skvlm-tiny`` is an
ordinary open_clip architecture; architectures open_clip cannot build (``SharedCLIP``)
live in ``configs/shared/`` and are listed here.
"""

import difflib
import json
import warnings
from functools import cache
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"
SHARED_CONFIG_DIR = CONFIG_DIR / "shared"
IMAGE_CONFIG_DIR = CONFIG_DIR / "image"
WEIGHTS_DIR = Path(__file__).parent / "weights"
VOCAB_FILE = CONFIG_DIR / "skvlm-tiny-vocab.txt"

PRECISIONS = ("fp32", "fp16", "bf16")


class ModelNotFound(ValueError):
    """Unknown model name or pretrained tag (the message lists close matches)."""


class WeightsUnavailableError(OSError):
    """Pretrained weights could not be fetched (typically: no network)."""


class CheckpointError(ValueError):
    """A local checkpoint cannot be used: unsafe to load, unreadable, or the wrong shape.

    The message names the file and, for a shape mismatch, the first tensor that does
    not fit and both shapes.
    """


class _CheckpointNotFound(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist (catchable as either base)."""


@cache
def _register_open_clip_configs():
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    return True


def skvlm_model_names():
    """Names of the architectures that ship with skvlm (open_clip and shared)."""
    own = [p.stem for p in CONFIG_DIR.glob("*.json")]
    shared = [p.stem for p in SHARED_CONFIG_DIR.glob("*.json")]
    return sorted(own + shared)


def image_model_names():
    """skvlm's own image-only models (served by ``ImageEncoder``, e.g. ``skvlm-tiny-ssl``)."""
    return sorted(p.stem for p in IMAGE_CONFIG_DIR.glob("*.json"))


def resolve_skvlm_image_pretrained(name, pretrained):
    """``"default"``/True → the shipped file of an image-only skvlm model (random init
    with a warning while none ships); None/False → random init; else an existing file."""
    if pretrained in ("default", True):
        path = shipped_weights(name)
        if path is None:
            warnings.warn(
                f"No trained weights ship for {name!r} yet; using a random initialisation "
                "(seed 0).",
                UserWarning,
                stacklevel=3,
            )
            return None
        return str(path)
    if pretrained is None or pretrained is False:
        return None
    if not isinstance(pretrained, (str, Path)) or not Path(pretrained).expanduser().exists():
        raise _CheckpointNotFound(f"Checkpoint file not found: {str(pretrained)!r}.")
    return _checkpoint_path(pretrained)


def image_config(name):
    """The config (``embed_dim``, open_clip ``vision_cfg``) of an image-only skvlm model."""
    return json.loads((IMAGE_CONFIG_DIR / f"{name}.json").read_text())


def is_shared_architecture(name):
    return (SHARED_CONFIG_DIR / f"{name}.json").is_file()


def shared_config(name):
    return json.loads((SHARED_CONFIG_DIR / f"{name}.json").read_text())


def architecture_config(name):
    """The config a CLIP architecture is built from (towers, image size, preprocessing),
    as registered now: skvlm's shared ones, else open_clip's (None where open_clip has
    none, e.g. ``hf-hub:`` names). A config registered anew under an existing name
    (``open_clip.add_model_config``) shows here, so cache keys can follow it."""
    if is_shared_architecture(name):
        return shared_config(name)
    import open_clip

    _register_open_clip_configs()
    return open_clip.get_model_config(name)


def architecture_signature(name, kind="clip"):
    """:func:`architecture_config` as canonical JSON, for cache keys; "" for timm, whose
    configs are code (timm's version covers them)."""
    if kind != "clip":
        return ""
    return json.dumps(architecture_config(name), sort_keys=True, default=str)


def open_clip_config(name):
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


def vocab_words():
    """The compact vocabulary word list of the tiny models (one word per line)."""
    return [w for w in VOCAB_FILE.read_text().splitlines() if w.strip()]


def list_models():
    """Every model name skvlm can build: open_clip's registry plus skvlm's own.

    Examples
    --------
    >>> "skvlm-tiny" in list_models() and "ViT-B-32" in list_models()
    True
    """
    import open_clip

    _register_open_clip_configs()
    return sorted(set(open_clip.list_models()) | set(skvlm_model_names()))


def check_model_name(name):
    """Raise :class:`ModelNotFound` with close matches for an unknown model name."""
    if not isinstance(name, str):
        raise ModelNotFound(f"model must be a model name string, got {name!r}.")
    if name.startswith(("hf-hub:", "local-dir:")):
        return name
    if name in image_model_names():
        raise ModelNotFound(
            f"{name!r} is an image-only model (no text tower): embed images with "
            f"skvlm.ImageEncoder(model={name!r})."
        )
    known = list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f" Close matches: {close}." if close else ""
        raise ModelNotFound(
            f"Unknown model {name!r}.{hint} See skvlm.models.list_models() for all "
            f"{len(known)} names."
        )
    return name


def shipped_weights(name):
    """Path of the safetensors file shipped in the package for ``name``, or None."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    return path if path.is_file() else None


def resolve_pretrained(name, pretrained):
    """Turn ``pretrained`` into None (random init), a local file path, or a hub tag.

    ``"default"`` means the model's standard weights: the shipped file for skvlm's
    own models (random init with a warning while none ships), else ``"openai"``
    where open_clip has that tag, else its first listed tag.
    """
    if pretrained is None:
        return None
    if not isinstance(pretrained, (str, Path)):
        raise ValueError(
            f"pretrained must be None, 'default', a tag or a file path, got {pretrained!r}."
        )
    pretrained = str(pretrained)
    if not pretrained.strip():
        raise ModelNotFound(
            "pretrained='' is empty: pass None, 'default', a tag or a checkpoint file path."
        )
    if name.startswith(("hf-hub:", "local-dir:")):
        return None if pretrained == "default" else pretrained
    if pretrained == "default":
        if name in skvlm_model_names():
            path = shipped_weights(name)
            if path is None:
                warnings.warn(
                    f"No trained weights ship for {name!r} yet; using a random "
                    "initialisation (seed 0).",
                    UserWarning,
                    stacklevel=3,
                )
                return None
            return str(path)
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(name)
        if not tags:
            warnings.warn(
                f"open_clip lists no pretrained weights for {name!r}; using a random "
                "initialisation (seed 0).",
                UserWarning,
                stacklevel=3,
            )
            return None
        return "openai" if "openai" in tags else tags[0]
    if Path(pretrained).expanduser().exists():
        return _checkpoint_path(pretrained)
    looks_like_path = any(sep in pretrained for sep in ("/", "\\")) or Path(pretrained).suffix in (
        ".pt",
        ".pth",
        ".bin",
        ".safetensors",
        ".npz",
    )
    if name in skvlm_model_names():
        if looks_like_path:  # the same error as for open_clip's models
            raise _CheckpointNotFound(f"Checkpoint file not found: {pretrained!r}.")
        raise ModelNotFound(
            f"pretrained={pretrained!r} is neither 'default', None nor an existing file "
            f"for skvlm's own model {name!r}."
        )
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        if looks_like_path:
            raise _CheckpointNotFound(f"Checkpoint file not found: {pretrained!r}.")
        close = difflib.get_close_matches(pretrained, tags, n=5, cutoff=0.4)
        raise ModelNotFound(
            f"Unknown pretrained tag {pretrained!r} for {name!r}. "
            + (f"Close matches: {close}. " if close else "")
            + f"Tags for this model: {tags}; or pass a local checkpoint path or None."
        )
    return pretrained


def _checkpoint_path(pretrained):
    """The absolute path of an existing checkpoint file; a directory is a CheckpointError."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        raise CheckpointError(
            f"pretrained={str(pretrained)!r} is a directory, not a checkpoint file; pass "
            "the path of the .safetensors (or torch state_dict) file inside it."
        )
    return str(path.resolve())


def _resolve_timm_pretrained(pretrained):
    """``True`` for timm's own weights, None for random init, else a local file path.

    timm only takes a boolean, so every other string must be an existing file: it is
    never mistaken for "download the default weights".
    """
    if pretrained in ("default", True):
        return True
    if pretrained is None or pretrained is False:
        return None
    if not isinstance(pretrained, (str, Path)) or not str(pretrained).strip():
        raise ModelNotFound(
            f"pretrained={pretrained!r} is not 'default', True, None, False or a checkpoint "
            "file path."
        )
    if not Path(pretrained).expanduser().exists():
        raise _CheckpointNotFound(f"Checkpoint file not found: {str(pretrained)!r}.")
    return _checkpoint_path(pretrained)


def _unknown_device_message(device):
    """Name the devices this machine has, and the torch spelling of a GPU."""
    import torch

    valid = ["auto", "cpu"]
    if torch.cuda.is_available():
        valid += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        valid.append("mps")
    hint = ""
    if str(device).strip().lower().startswith("gpu"):
        hint = " (torch calls an NVIDIA or AMD GPU 'cuda')"
    if not torch.cuda.is_available():
        hint += "; no CUDA device is visible on this machine"
    return f"Unknown device {device!r}{hint}. Valid devices here: {', '.join(map(repr, valid))}."


def resolve_device(device="auto"):
    """``"auto"`` is CUDA when available, else CPU; a missing CUDA is a ValueError.

    Examples
    --------
    >>> str(resolve_device("cpu"))
    'cpu'
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(_unknown_device_message(device)) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} was requested but CUDA is not available on this "
                "machine; use device='cpu' or device='auto'."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r} does not exist: {torch.cuda.device_count()} "
                "CUDA device(s) visible."
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was requested but MPS is not available.")
    return device


def _cpu_flags():
    """The CPU feature flags Linux lists in /proc/cpuinfo (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


@cache
def cpu_has_bf16_units():
    """Whether this CPU multiplies bf16 matrices natively (AMX-BF16 or AVX512-BF16).

    Read from the kernel's CPU flags, else from torch's own CPU probe; without
    native units bf16 matrix products are emulated and slower than fp32.

    Examples
    --------
    >>> isinstance(cpu_has_bf16_units(), bool)
    True
    """
    flags = _cpu_flags()
    if flags:
        return bool(flags & {"amx_bf16", "avx512_bf16", "bf16"})  # "bf16": Arm BF16
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    for probe in probes:
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:
            continue
    return False


def _cuda_has_bf16(device):
    import torch

    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8  # Ampere and later: bf16 tensor cores


def resolve_precision(precision, device):
    """The precision of the weights a model runs with on ``device``.

    ``"auto"`` is the fastest precision that keeps results: half-precision weights on
    CUDA (bf16 on Ampere and later, else fp16; the layers that need fp32 stay fp32,
    as open_clip's own ``precision`` does), bf16 weights on a CPU with native bf16
    matrix units (AMX or AVX512-BF16), and fp32 everywhere else. ``"fp32"`` is
    always exact. A precision the device cannot run is a ValueError.

    Examples
    --------
    >>> import torch
    >>> resolve_precision("fp32", torch.device("cpu"))
    'fp32'
    >>> resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
    True
    """
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if _cuda_has_bf16(device) else "fp16"
        if device.type == "cpu" and cpu_has_bf16_units():
            return "bf16"
        return "fp32"
    if precision not in PRECISIONS:
        close = difflib.get_close_matches(str(precision), PRECISIONS, n=1)
        raise ValueError(
            f"precision={precision!r} is not one of {list(PRECISIONS) + ['auto']}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + "."
        )
    if precision == "fp16" and device.type == "cpu":
        raise ValueError(
            "precision='fp16' cannot run on the CPU (no fp16 matrix kernels); use "
            "'fp32', 'bf16' or 'auto'."
        )
    if precision == "bf16" and device.type == "cuda" and not _cuda_has_bf16(device):
        import torch

        raise ValueError(
            f"precision='bf16' cannot run on {torch.cuda.get_device_name(device)} "
            "(bf16 needs compute capability 8.0 or later); use 'fp16', 'fp32' or 'auto'."
        )
    if precision != "fp32" and device.type == "mps":
        raise ValueError(
            f"precision={precision!r} is not supported on MPS by skvlm; use 'fp32' or 'auto'."
        )
    return precision
