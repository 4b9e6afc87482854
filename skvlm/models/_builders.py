"""Building each kind of model (open_clip, skvlm's shared and image-only towers, timm)
and loading its weights: hub tags through open_clip, local files through
:mod:`skvlm.models._checkpoints`.
"""

import contextlib
import logging
import math
import threading
from pathlib import Path

from ._checkpoints import (
    _NPZ_HINT,
    _check_finite_after_load,
    _finite_before_load,
    _is_local_file,
    _load_checked,
    _load_state_dict,
    _weights_metadata,
)
from ._hub import check_weights_reachable
from ._registry import (
    CheckpointError,
    WeightsUnavailableError,
    _register_open_clip_configs,
    image_config,
    open_clip_config,
    shared_config,
    skvlm_model_names,
    vocab_words,
)

_RANDOM_INIT_SEED = 0


def _torch_dtype(precision):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _cast_weights(module, precision):
    """All of ``module``'s float tensors in ``precision`` (timm and SharedCLIP towers)."""
    if precision != "fp32":
        module.to(_torch_dtype(precision))
    return module


@contextlib.contextmanager
def _seeded_init():
    """Deterministic random init without leaving a trace on torch's global RNG."""
    import torch

    # One build at a time: the seed is global, and so is a skipped init's patch.
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_INIT_SEED)
        yield


# torch.nn.init's in-place initialisers: every layer's reset_parameters goes through them.
_INITIALISERS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)
_INIT_LOCK = threading.RLock()  # torch.nn.init is patched process-wide meanwhile


@contextlib.contextmanager
def _skipped_init(skip=True):
    """Build without drawing random weights, for a model a checkpoint is loaded into.

    Drawing ViT-B-32's 150 M random weights costs about as long as reading the file
    that replaces them all (the load is strict: every parameter and persistent buffer
    comes from the file). Buffers computed in ``__init__`` (attention masks) are not
    drawn, so they are built as usual. The weights hold whatever memory they were
    given until the load: :func:`~skvlm.models._checkpoints._load_checked` checks
    every parameter, not just those finite before, for NaN after it.
    """
    import torch.nn.init as init

    if not skip:
        yield
        return
    with _INIT_LOCK:
        saved = {name: getattr(init, name) for name in _INITIALISERS if hasattr(init, name)}
        for name in saved:
            setattr(init, name, _unchanged)
        try:
            yield
        finally:
            for name, function in saved.items():
                setattr(init, name, function)


def _unchanged(tensor, *args, **kwargs):
    return tensor


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
    finite_before = _finite_before_load(model)
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
            skip = local_file and not str(pretrained).endswith((".npz", ".npy"))
            with _quiet_random_init_warning(), hub, _skipped_init(skip):
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
