"""Class names, prompt templates and class-name text embeddings.

The ImageNet class names and the prompt templates come from open_clip's own
constants (``open_clip.zero_shot_metadata``), never retyped. open_clip stores the
templates as lambdas; calling each on ``"{}"`` turns it back into a format string.
"""

import difflib

import numpy as np

from ._math import l2_normalize

_TEMPLATE_SETS = ("openai", "simple")


def _open_clip_metadata():
    # Imported lazily: open_clip imports torch, and the numeric layers must not.
    from open_clip import zero_shot_metadata

    return zero_shot_metadata


def resolve_templates(templates):
    """Return a list of format strings, each with exactly one ``{}``.

    Parameters
    ----------
    templates : {"openai", "simple"}, None, str or list of str
        ``"openai"``: open_clip's 80 ImageNet templates; ``"simple"``: its 7;
        ``None``: the bare class name (``["{}"]``); a single format string or a list.

    Examples
    --------
    >>> resolve_templates(None)
    ['{}']
    >>> len(resolve_templates("openai")), len(resolve_templates("simple"))
    (80, 7)
    """
    if templates is None:
        return ["{}"]
    if isinstance(templates, str) and templates in _TEMPLATE_SETS:
        meta = _open_clip_metadata()
        source = (
            meta.OPENAI_IMAGENET_TEMPLATES
            if templates == "openai"
            else meta.SIMPLE_IMAGENET_TEMPLATES
        )
        return [template("{}") for template in source]
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if not templates:
        raise ValueError("templates is an empty list; pass at least one format string.")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(
                f"Each template must be a string with exactly one '{{}}' placeholder, "
                f"got {template!r}; or use one of {list(_TEMPLATE_SETS)} or None."
            )
    return templates


def resolve_class_names(class_names):
    """Return the class names as a list of strings.

    ``"imagenet"`` gives open_clip's 1000 ImageNet class names.

    Examples
    --------
    >>> resolve_class_names(["cat", "dog"])
    ['cat', 'dog']
    >>> len(resolve_class_names("imagenet"))
    1000
    """
    if isinstance(class_names, str):
        if class_names == "imagenet":
            return list(_open_clip_metadata().IMAGENET_CLASSNAMES)
        close = difflib.get_close_matches(class_names, ["imagenet", "labels"], n=2)
        raise ValueError(
            f"class_names={class_names!r} is not a known set; use 'imagenet' or a list "
            f"of names" + (f" (did you mean {close}?)" if close else "") + "."
        )
    names = [str(name) for name in class_names]
    if not names:
        raise ValueError("class_names is empty; pass at least one class name.")
    return names


def class_text_embeddings(encode_text, class_names, templates):
    """Embed each class as the normalised mean of its normalised template embeddings.

    This is CLIP's zero-shot classifier construction (Radford et al., 2021) and the
    input of PCA← (Herzog & Wang, 2026).

    Parameters
    ----------
    encode_text : callable
        Maps a list of strings to an (n, d) array, e.g. ``CLIPEncoder().encode_text``.
    class_names : list of str
    templates : list of str
        Format strings with one ``{}`` (see :func:`resolve_templates`).

    Returns
    -------
    ndarray of shape (n_classes, d), float32, rows of unit norm.

    Examples
    --------
    >>> def fake_encode(texts):  # a deterministic stand-in for a text tower
    ...     return np.array([[len(t), 1.0] for t in texts])
    >>> class_text_embeddings(fake_encode, ["a"], ["{}"]).round(3)
    array([[0.707, 0.707]], dtype=float32)
    """
    class_names = list(class_names)
    templates = list(templates)
    texts = [template.format(name) for name in class_names for template in templates]
    embeddings = l2_normalize(np.asarray(encode_text(texts), dtype=np.float64))
    per_class = embeddings.reshape(len(class_names), len(templates), -1).mean(axis=1)
    return l2_normalize(per_class).astype(np.float32)
