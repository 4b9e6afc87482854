"""Class names, prompt templates, class descriptions and class-name text embeddings.

The ImageNet class names and the prompt templates come from open_clip's own
constants (``open_clip.zero_shot_metadata``), never retyped. open_clip stores the
templates as lambdas; calling each on ``"{}"`` turns it back into a format string.

Every class name is written with spaces for underscores before it is put in a
prompt (:func:`display_name`), as every reference does (``classname.replace('_', ' ')``):
the names of a list, of string labels and of image folders alike.
"""

import difflib
from collections.abc import Mapping

import numpy as np

from ._math import l2_normalize

_TEMPLATE_SETS = ("openai", "simple")


def _open_clip_metadata():
    # Imported lazily: open_clip imports torch, and the numeric layers must not.
    from open_clip import zero_shot_metadata

    return zero_shot_metadata


def display_name(name):
    """The class name as it goes into a prompt: underscores become spaces.

    Examples
    --------
    >>> display_name("golden_retriever")
    'golden retriever'
    """
    return str(name).replace("_", " ")


def resolve_templates(templates, allow_empty=False):
    """Return a list of format strings, each with exactly one ``{}``.

    Parameters
    ----------
    templates : {"openai", "simple"}, None, str or list of str
        ``"openai"``: open_clip's 80 ImageNet templates; ``"simple"``: its 7 (the
        ImageNet ensemble of Tip-Adapter, GDA, SuS-X and seed 002);
        ``None``: the bare class name (``["{}"]``); a single format string or a list.
    allow_empty : bool, default=False
        Accept an empty list (class descriptions alone, without templates).

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
    if not templates and not allow_empty:
        raise ValueError(
            "templates is an empty list; pass at least one format string (an empty "
            "list is only allowed with class descriptions)."
        )
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


def class_text_embeddings(encode_text, class_names, templates, descriptions=None):
    """Embed each class as the normalised mean of its normalised prompt embeddings.

    A class's prompts are its templates filled with its name (underscores written
    as spaces) followed by its descriptions, if any: CuPL-style sentences, all in
    one mean, as APE (``extract_features.py:61-84``) and Tip-X (``combined``) mix
    templates and GPT-3 descriptions. This is CLIP's zero-shot classifier
    construction (Radford et al., 2021) and the input of PCA← (Herzog & Wang, 2026).

    Parameters
    ----------
    encode_text : callable
        Maps a list of strings to an (n, d) array, e.g. ``CLIPEncoder().encode_text``.
    class_names : list of str
    templates : list of str
        Format strings with one ``{}`` (see :func:`resolve_templates`); may be empty
        when every class has descriptions.
    descriptions : mapping of str to list of str, or None, default=None
        Sentences per class name (no ``{}`` slot), e.g. CuPL's GPT-3 descriptions.
        Every class must have an entry (looked up by the name as given, then with
        underscores as spaces); a missing one is a ``ValueError`` naming it.

    Returns
    -------
    ndarray of shape (n_classes, d), float32, rows of unit norm.

    Examples
    --------
    >>> def fake_encode(texts):  # a deterministic stand-in for a text tower
    ...     return np.array([[len(t), 1.0] for t in texts])
    >>> class_text_embeddings(fake_encode, ["a"], ["{}"]).round(3)
    array([[0.707, 0.707]], dtype=float32)
    >>> class_text_embeddings(fake_encode, ["a_b"], ["{}"]).round(3)  # "a b": 3 chars
    array([[0.949, 0.316]], dtype=float32)
    """
    per_class = class_prompts(class_names, templates, descriptions)
    texts = [text for prompts in per_class for text in prompts]
    embeddings = l2_normalize(np.asarray(encode_text(texts), dtype=np.float64))
    counts = np.array([len(prompts) for prompts in per_class])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    means = np.add.reduceat(embeddings, starts, axis=0) / counts[:, None]
    return l2_normalize(means).astype(np.float32)


def class_prompts(class_names, templates, descriptions=None):
    """The prompts of each class: its templates filled with its name, then its descriptions.

    Examples
    --------
    >>> class_prompts(["sea_lion"], ["a photo of a {}."], {"sea_lion": ["it swims."]})
    [['a photo of a sea lion.', 'it swims.']]
    """
    class_names = list(class_names)
    templates = list(templates)
    per_class = [
        [template.format(display_name(name)) for template in templates]
        + _class_descriptions(descriptions, name)
        for name in class_names
    ]
    empty = [name for name, prompts in zip(class_names, per_class) if not prompts]
    if empty:
        raise ValueError(
            f"Classes {empty[:5]} have no prompt: no templates and no descriptions; "
            "give templates or at least one description per class."
        )
    return per_class


def _class_descriptions(descriptions, name):
    """The description sentences of one class (a list), checked."""
    if descriptions is None:
        return []
    if not isinstance(descriptions, Mapping):
        raise TypeError(
            "descriptions must be a mapping of class name -> list of sentences, got "
            f"{type(descriptions).__name__}."
        )
    for key in (name, str(name), display_name(name)):
        if key in descriptions:
            sentences = descriptions[key]
            break
    else:
        close = difflib.get_close_matches(str(name), [str(k) for k in descriptions], n=3)
        hint = f" (closest keys: {close})" if close else ""
        raise ValueError(
            f"descriptions has no entry for class {str(name)!r}{hint}; give a list of "
            "sentences for every class (an empty list uses its templates only)."
        )
    if isinstance(sentences, str):
        sentences = [sentences]
    sentences = list(sentences)
    bad = [s for s in sentences if not isinstance(s, str)]
    if bad:
        raise ValueError(f"descriptions[{str(name)!r}] must be sentences (str), got {bad[0]!r}.")
    return sentences
