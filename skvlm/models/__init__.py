"""Model specs, loading and the process-wide model cache."""

from ._file_hash import file_content_hash
from ._identity import model_identity
from ._loading import LoadedModel, cached_models, clear_model_cache, load_model
from ._registry import (
    CheckpointError,
    ModelNotFound,
    WeightsUnavailableError,
    check_model_name,
    list_models,
    resolve_device,
    resolve_precision,
    resolve_pretrained,
)
from ._towers import (
    encode_text_prefix,
    pooled_position,
    replace_output,
    token_embedding,
    vit_tower,
)

__all__ = [
    "CheckpointError",
    "LoadedModel",
    "ModelNotFound",
    "WeightsUnavailableError",
    "cached_models",
    "encode_text_prefix",
    "check_model_name",
    "clear_model_cache",
    "file_content_hash",
    "list_models",
    "load_model",
    "model_identity",
    "pooled_position",
    "replace_output",
    "resolve_device",
    "resolve_precision",
    "resolve_pretrained",
    "token_embedding",
    "vit_tower",
]
