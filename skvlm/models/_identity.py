"""What a cache key needs to know of a model, without loading it."""

import os
import warnings
from pathlib import Path

from ._file_hash import file_content_hash
from ._registry import architecture_signature, check_model_name, resolve_pretrained


def _weights_identity(model, pretrained, kind):
    if kind == "timm":
        if pretrained in ("default", True):
            return f"timm-default:{model}"
    else:
        check_model_name(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no weights ship yet" is said when loading
            pretrained = resolve_pretrained(model, pretrained)
    if pretrained is None or pretrained is False:
        import open_clip

        return f"random-init-seed0-open_clip{open_clip.__version__}"
    if isinstance(pretrained, (str, Path)) and os.path.isfile(str(pretrained)):
        return "file:" + file_content_hash(str(pretrained))
    return f"tag:{pretrained}"


def model_identity(model, pretrained="default", kind="clip"):
    """(architecture, weights): the identity of a model spec, without loading it.

    The architecture part is the registered config (so a config registered anew under
    the same name differs); the weights part is the tag, the content hash of a local
    checkpoint (read once per version of the file, memoised on disk) or the random
    initialisation. Embedding cache keys are built from it.

    Parameters
    ----------
    model : str
        A model name (open_clip, skvlm's own, or timm with ``kind="timm"``).
    pretrained : "default", str, path, bool or None
        As in :func:`skvlm.models.load_model`.
    kind : {"clip", "timm"}

    Returns
    -------
    tuple of str

    Examples
    --------
    >>> architecture, weights = model_identity("skvlm-tiny", pretrained=None)
    >>> weights.startswith("random-init")
    True
    """
    return architecture_signature(model, kind), _weights_identity(model, pretrained, kind)
