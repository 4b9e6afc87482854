"""Text weights for the classifiers that use class-name text (one place for all).

A text-using classifier takes one of:

- ``text_weights``: an (n_rows, d) array (rows = sorted classes, or rows named by
  ``class_names``, or rows indexed by integer labels), or a callable
  ``f(classes, n_features) -> (n_classes, n_features)`` evaluated in ``fit``;
- ``class_names`` (a list, ``"imagenet"`` or ``"labels"``) embedded by ``encoder``
  (default: ``CLIPEncoder()``) with ``templates`` and, per class, ``descriptions``
  (CuPL-style sentences, in the same mean as the templates);
- nothing, with string labels: the labels are the class names.

The result is an (n_classes, d) array of unit rows aligned with ``classes_``.
"""

import difflib
from collections.abc import Mapping

import numpy as np
from sklearn.utils import check_array

from .._math import l2_normalize
from .._sklearn import HasMethods, StrOptions

TEXT_PARAMETER_CONSTRAINTS = {
    "class_names": ["array-like", StrOptions({"imagenet", "labels"}), None],
    "templates": [str, list, tuple, None],
    "encoder": [HasMethods(["encode_text"]), None],
    "text_weights": ["array-like", callable, None],
    "descriptions": [Mapping, None],
}


def uses_text(estimator):
    """Whether any text source was given (optional-text classifiers stay image-only otherwise)."""
    return any(
        getattr(estimator, name, None) is not None
        for name in ("text_weights", "class_names", "encoder", "descriptions")
    )


def resolve_text_weights(estimator, classes, n_features):
    """Return the (n_classes, n_features) float32 unit-norm text classifier of ``classes``."""
    name = type(estimator).__name__
    if estimator.text_weights is not None:
        if getattr(estimator, "descriptions", None) is not None:
            raise ValueError(
                f"{name}: descriptions are embedded by the encoder, but text_weights "
                "was given and bypasses it; pass one of them (embed the descriptions "
                "into the text weights yourself with skvlm._text.class_text_embeddings)."
            )
        weights = _weights_from_array(estimator, classes, n_features, name)
    else:
        weights = _weights_from_names(estimator, classes, name)
    if weights.shape[1] != n_features:
        raise ValueError(
            f"{name}: the text weights have width {weights.shape[1]} but X has "
            f"{n_features} features; text and image embeddings must come from the "
            "same model (and the same projection)."
        )
    return l2_normalize(weights.astype(np.float64)).astype(np.float32)


def _weights_from_array(estimator, classes, n_features, name):
    text_weights = estimator.text_weights
    if callable(text_weights):
        weights = _as_weights(text_weights(classes, n_features), name)
        if weights.shape[0] != len(classes):
            raise ValueError(
                f"{name}: text_weights({list(classes)!r}, {n_features}) returned "
                f"{weights.shape[0]} rows; it must return one row per class "
                f"({len(classes)})."
            )
        return weights
    weights = _as_weights(text_weights, name)
    names = _explicit_names(estimator.class_names)
    if names is not None and len(names) != weights.shape[0]:
        raise ValueError(
            f"{name}: text_weights has {weights.shape[0]} rows but class_names has "
            f"{len(names)} names; class_names must name the rows of text_weights."
        )
    return weights[_class_rows(classes, weights.shape[0], names, name)]


def _weights_from_names(estimator, classes, name):
    from .._text import class_text_embeddings

    wanted, encoder, templates, descriptions = _prompt_sources(estimator, classes, name)
    return class_text_embeddings(encoder.encode_text, wanted, templates, descriptions)


def prompt_embeddings(estimator, classes):
    """Every prompt of every class as its own unit row (a text bank), float32.

    The prompts are those of the text classifier (templates filled with each class
    name, then its descriptions), embedded by the estimator's encoder, not averaged.
    """
    from .._math import l2_normalize
    from .._text import class_prompts

    wanted, encoder, templates, descriptions = _prompt_sources(
        estimator, classes, type(estimator).__name__
    )
    texts = [text for prompts in class_prompts(wanted, templates, descriptions) for text in prompts]
    return l2_normalize(np.asarray(encoder.encode_text(texts), dtype=np.float64)).astype(np.float32)


def _prompt_sources(estimator, classes, name):
    """(class name of each class, encoder, templates, descriptions) for embedding prompts."""
    from .._text import resolve_templates

    names = _explicit_names(estimator.class_names)
    if names is None:
        if estimator.class_names is None and not _are_strings(classes):
            raise ValueError(
                f"{name} needs class-name text but got integer labels "
                f"{_preview(classes)} and no text: pass text_weights (an array or a "
                "callable), or class_names (+ encoder), or string labels."
            )
        names = [str(label) for label in classes]
    rows = _class_rows(classes, len(names), names, name)
    encoder = estimator.encoder
    if encoder is None:
        from ..encoders import CLIPEncoder

        encoder = CLIPEncoder()
    descriptions = getattr(estimator, "descriptions", None)
    templates = resolve_templates(estimator.templates, allow_empty=descriptions is not None)
    return [names[row] for row in rows], encoder, templates, descriptions


def _explicit_names(class_names):
    """The list named by ``class_names``, or None for None/"labels"."""
    if class_names is None or (isinstance(class_names, str) and class_names == "labels"):
        return None
    from .._text import resolve_class_names

    return resolve_class_names(class_names)


def _as_weights(weights, name):
    weights = check_array(weights, dtype=[np.float64, np.float32], input_name="text_weights")
    if weights.shape[0] == 0:
        raise ValueError(f"{name}: text_weights has no rows.")
    return weights


def _are_strings(classes):
    return all(isinstance(label, str) for label in classes)


def _class_rows(classes, n_rows, names, name):
    """Row of each class: by name, else sorted-class order, else integer label as index."""
    if names is not None:
        index = {str(row_name): i for i, row_name in enumerate(names)}
        if all(str(label) in index for label in classes):
            return np.array([index[str(label)] for label in classes], dtype=np.intp)
    elif n_rows == len(classes):
        return np.arange(n_rows)
    if classes.dtype.kind in "iu" and classes.min() >= 0 and classes.max() < n_rows:
        return classes.astype(np.intp)
    if names is None:
        raise ValueError(
            f"{name}: text_weights has {n_rows} rows for the {len(classes)} classes "
            f"{_preview(classes)}; give one row per class in sorted-class order, or "
            "class_names naming the rows, or integer labels indexing them."
        )
    unseen = [label for label in classes if str(label) not in names]
    hint = ""
    if names is not None and unseen:
        close = difflib.get_close_matches(str(unseen[0]), [str(n) for n in names], n=3)
        hint = f" (closest names to {str(unseen[0])!r}: {close})" if close else ""
    raise ValueError(
        f"{name}: labels {_preview(unseen)} have no row in the text weights "
        f"named by class_names{hint}; string labels must be among the names, integer "
        f"labels may index them (0..{n_rows - 1})."
    )


def _preview(values, limit=5):
    values = [v.item() if hasattr(v, "item") else v for v in values]
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"
