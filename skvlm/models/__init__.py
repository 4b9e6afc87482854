"""Model specs, loading and the process-wide model cache."""

from ._loading import LoadedModel, cached_models, clear_model_cache, load_model
from ._registry import (
    CheckpointError,
    ModelNotFound,
    WeightsUnavailableError,
    list_models,
    resolve_device,
    resolve_precision,
    resolve_pretrained,
)

__all__ = [
    "CheckpointError",
    "LoadedModel",
    "ModelNotFound",
    "WeightsUnavailableError",
    "cached_models",
    "clear_model_cache",
    "list_models",
    "load_model",
    "resolve_device",
    "resolve_precision",
    "resolve_pretrained",
]
