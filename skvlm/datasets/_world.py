"""The scene world's one home: vocabulary, captions, their parsing, distances, zero-shot.

:func:`~skvlm.datasets.make_scenes` draws scenes from one of two worlds:

- ``version=1``: one coloured object on a grey background (8 shapes, 8 colours,
  5 grey backgrounds). The world of the first shipped model; kept unchanged.
- ``version=2``: a main object and 0-2 smaller distractor objects (so 1-3
  objects), 12 shapes and 12 colours with near neighbours (circle/hexagon,
  square/rectangle, red/crimson, blue/navy...), 8 coloured and textured
  backgrounds, occlusion, lighting, blur and noise.
- ``version=3``: the scenes of world 2, pixel for pixel (the same images for a
  seed), with captions that use three pairs of look-alike names loosely: a
  hexagon is called "circle" as often as "hexagon", and a circle "hexagon" as
  often as "circle" (likewise square/rectangle and ring/crescent). What tells
  the two apart is said in other words, in 60 % of the captions: "smooth" or
  "angular", "even" or "long", "closed" or "open". Web captions name
  fine-grained classes this loosely; a prompt with the class name then cannot
  separate the pair, while the image embedding, trained on the other words,
  can, so few-shot methods have room over zero-shot. The tiny model zoo is
  trained on it.

Everything that knows the words of a world lives here, so training, the demo
and IMSep's caption distances agree: the factor values (:data:`WORLDS`), the
caption templates, the zero-shot prompt templates (:func:`zero_shot_templates`),
a parser that reads the attributes a caption states (:func:`caption_attributes`),
the graded distance AlignCLIP needs (:func:`attribute_distance`) and the
zero-shot evaluator (:func:`zero_shot_accuracy`). This module needs numpy only.
"""

import re
from functools import cache, lru_cache

import numpy as np

SHAPES_V1 = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "crescent")
COLOURS_V1 = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
BACKGROUNDS_V1 = ("dark", "light", "striped", "dotted", "noisy")

SHAPES_V2 = (
    "circle",
    "hexagon",
    "square",
    "rectangle",
    "triangle",
    "arrow",
    "diamond",
    "star",
    "cross",
    "ring",
    "crescent",
    "heart",
)
COLOURS_V2 = (
    "red",
    "crimson",
    "orange",
    "yellow",
    "lime",
    "green",
    "teal",
    "cyan",
    "blue",
    "navy",
    "purple",
    "pink",
)
BACKGROUNDS_V2 = (
    "dark",
    "light",
    "gradient",
    "striped",
    "wavy",
    "checkered",
    "dotted",
    "noisy",
)
COUNTS_V2 = ("one", "two", "three")
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")

WORLDS = {
    1: {
        "shape": SHAPES_V1,
        "colour": COLOURS_V1,
        "size": SIZES,
        "position": POSITIONS,
        "background": BACKGROUNDS_V1,
    },
    2: {
        "shape": SHAPES_V2,
        "colour": COLOURS_V2,
        "size": SIZES,
        "position": POSITIONS,
        "background": BACKGROUNDS_V2,
        "count": COUNTS_V2,
    },
}
WORLDS[3] = dict(WORLDS[2])  # the same scenes; only the captions differ

# Near neighbours: value pairs that look alike (graded as half-similar by
# attribute_distance, and the confusions the world is built to contain).
NEAR_NEIGHBOURS = {
    "shape": (
        ("circle", "hexagon"),
        ("circle", "ring"),
        ("square", "rectangle"),
        ("square", "diamond"),
        ("triangle", "arrow"),
        ("star", "cross"),
        ("ring", "crescent"),
        ("heart", "triangle"),
    ),
    "colour": (
        ("red", "crimson"),
        ("red", "orange"),
        ("orange", "yellow"),
        ("yellow", "lime"),
        ("lime", "green"),
        ("green", "teal"),
        ("teal", "cyan"),
        ("cyan", "blue"),
        ("blue", "navy"),
        ("navy", "purple"),
        ("purple", "pink"),
        ("crimson", "pink"),
    ),
    "background": (
        ("dark", "gradient"),
        ("light", "gradient"),
        ("striped", "wavy"),
        ("checkered", "dotted"),
        ("dotted", "noisy"),
    ),
    "count": (("one", "two"), ("two", "three")),
    "size": (),
    "position": (
        ("top left", "top right"),
        ("top left", "bottom left"),
        ("bottom right", "top right"),
        ("bottom right", "bottom left"),
    ),
}

# Caption synonyms of the v2 world ("dog" and "puppy"): several words, one value.
SHAPE_SYNONYMS = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "ring": ("ring", "donut"),
    "crescent": ("crescent", "moon"),
    "cross": ("cross", "plus sign"),
}

# World 3: look-alike shapes whose class names captions use interchangeably (each
# name half of the time for either shape, never a synonym), and the adjective that
# states the difference, for each shape of a pair.
LOOSE_NAME_PAIRS = (("circle", "hexagon"), ("square", "rectangle"), ("ring", "crescent"))
LOOSE_NAME_RATE = 0.5
SHAPE_ADJECTIVES = {
    "circle": "smooth",
    "hexagon": "angular",
    "square": "even",
    "rectangle": "long",
    "ring": "closed",
    "crescent": "open",
}
SHAPE_ADJECTIVE_RATE = 0.6

# Openings: plain phrasings plus CLIP's ImageNet prompt templates (Radford et al.,
# 2021) that name no factor value and no plural, so zero-shot prompts use words
# the tiny models saw in training.
OPENINGS = (
    "{}.",
    "a {}.",
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "there is a {}.",
    "this is a {}.",
    "a {} is shown.",
    "a photo of the {}.",
    "a bad photo of a {}.",
    "a bad photo of the {}.",
    "a good photo of a {}.",
    "a good photo of the {}.",
    "a photo of one {}.",
    "a photo of my {}.",
    "a photo of a hard to see {}.",
    "a photo of the hard to see {}.",
    "a photo of a clean {}.",
    "a photo of the dirty {}.",
    "a photo of a nice {}.",
    "a photo of the weird {}.",
    "a photo of a cool {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a cropped photo of a {}.",
    "a blurry photo of the {}.",
    "a low resolution photo of a {}.",
    "a pixelated photo of the {}.",
    "a jpeg corrupted photo of a {}.",
    "itap of a {}.",
    "itap of my {}.",
    "a drawing of a {}.",
    "a drawing of the {}.",
    "a painting of a {}.",
    "a sketch of the {}.",
    "a doodle of a {}.",
    "a rendering of a {}.",
    "a rendition of the {}.",
    "a sculpture of a {}.",
    "a tattoo of the {}.",
    "graffiti of a {}.",
    "art of the {}.",
    "a cartoon {}.",
    "the embroidered {}.",
    "a plastic {}.",
    "the origami {}.",
    "a toy {}.",
    "a plushie {}.",
    "a {} in a video game.",
)
SHAPE_FALLBACK = ("shape", "object")
POSITION_PHRASES = ("in the {}", "at the {}", "in the {} corner")
BACKGROUND_PHRASES_V1 = {
    "dark": ("on a dark background", "on black", "in the dark"),
    "light": ("on a light background", "on light grey", "on white"),
    "striped": ("on a striped background", "on stripes", "with stripes behind it"),
    "dotted": ("on a dotted background", "on dots", "with dots behind it"),
    "noisy": ("on a noisy background", "on grey noise", "with noise behind it"),
}
BACKGROUND_PHRASES_V2 = {
    **BACKGROUND_PHRASES_V1,
    "light": ("on a light background", "on a pale background", "on white"),
    "noisy": ("on a noisy background", "on noise", "with noise behind it"),
    "gradient": ("on a gradient background", "on a gradient", "with a gradient behind it"),
    "wavy": ("on a wavy background", "on waves", "with waves behind it"),
    "checkered": ("on a checkered background", "on checks", "on a checkerboard"),
}
DISTRACTOR_PHRASES = ("next to a {}", "beside a {}", "near a {}")
COUNT_PHRASES = {
    "one": ("alone", "on its own"),
    "two": ("with one other object", "one of two objects"),
    "three": ("with two other objects", "one of three objects"),
}

# The prompts of the zero-shot evaluation, per labelling.
ZERO_SHOT_TEMPLATES = {
    1: {
        "shape": ("a photo of a {}.", "a {}."),
        "colour": ("a photo of a {} shape.", "a {} object."),
        "background": ("a shape on a {} background.",),
    },
    2: {
        "shape": ("a photo of a {}.", "a {}."),
        "colour": ("a photo of a {} shape.", "a {} object."),
        "background": ("a shape on a {} background.", "an object on a {} background."),
        "count": ("a photo of a shape {}.", "an object {}."),
    },
}
ZERO_SHOT_TEMPLATES[3] = ZERO_SHOT_TEMPLATES[2]
_COUNT_PROMPT_NAMES = {
    "one": COUNT_PHRASES["one"][0],
    "two": COUNT_PHRASES["two"][0],
    "three": COUNT_PHRASES["three"][0],
}

_WORD = re.compile(r"[a-z]+|[^\sa-z{}]")


def check_version(version):
    """``version`` as an int of :data:`WORLDS`, or a ValueError naming the choices."""
    if isinstance(version, bool) or version not in WORLDS:
        raise ValueError(f"version must be one of {sorted(WORLDS)}, got {version!r}.")
    return int(version)


def factor_names(version=1):
    """The factors of a world and their ordered values (the class names of a labelling).

    Examples
    --------
    >>> list(factor_names(2))
    ['shape', 'colour', 'size', 'position', 'background', 'count']
    >>> factor_names(2)["count"]
    ('one', 'two', 'three')
    """
    return dict(WORLDS[check_version(version)])


def zero_shot_templates(version=1):
    """Zero-shot prompt templates per labelling, ``{}`` the class name."""
    return {k: list(v) for k, v in ZERO_SHOT_TEMPLATES[check_version(version)].items()}


def zero_shot_class_names(factor, names):
    """The words put in a zero-shot prompt for each class (count reads "alone",
    "with one other object", "with two other objects")."""
    if factor == "count":
        return [_COUNT_PROMPT_NAMES.get(n, n) for n in names]
    return list(names)


def caption_vocabulary(version=None):
    """Every word (and punctuation mark) a caption or zero-shot prompt can contain.

    ``version=None`` is the union over all worlds (the tiny models' vocabulary).

    Examples
    --------
    >>> {"circle", "crescent", "striped", "."} <= set(caption_vocabulary(1))
    True
    >>> {"hexagon", "crimson", "checkered", "beside"} <= set(caption_vocabulary(2))
    True
    """
    versions = sorted(WORLDS) if version is None else [check_version(version)]
    texts = list(OPENINGS) + list(SHAPE_FALLBACK) + list(POSITION_PHRASES) + ["an", "the", "a"]
    for v in versions:
        texts += [value for values in WORLDS[v].values() for value in values]
        texts += [t for ts in ZERO_SHOT_TEMPLATES[v].values() for t in ts]
        phrases = BACKGROUND_PHRASES_V1 if v == 1 else BACKGROUND_PHRASES_V2
        texts += [p for ps in phrases.values() for p in ps]
        if v >= 2:
            texts += [s for ss in SHAPE_SYNONYMS.values() for s in ss]
            texts += list(SHAPE_ADJECTIVES.values()) if v == 3 else []
            texts += list(DISTRACTOR_PHRASES) + list(_COUNT_PROMPT_NAMES.values())
            texts += [p for ps in COUNT_PHRASES.values() for p in ps]
    words = set()
    for text in texts:
        words.update(_WORD.findall(text.replace("{}", " ").lower()))
    return sorted(words)


def _fix_articles(text):
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def _phrase_table():
    """Word sequences → (attribute, value), longest first, for caption parsing."""
    table = {}
    for value in SHAPES_V1 + SHAPES_V2:
        table[(value,)] = ("shape", value)
    for value, synonyms in SHAPE_SYNONYMS.items():
        for synonym in synonyms:
            table[tuple(synonym.split())] = ("shape", value)
    for value in COLOURS_V1 + COLOURS_V2:
        table[(value,)] = ("colour", value)
    for value in SIZES:
        table[(value,)] = ("size", value)
    for value in POSITIONS:
        table[tuple(value.split())] = ("position", value)
    for phrases in (BACKGROUND_PHRASES_V1, BACKGROUND_PHRASES_V2):
        for value, texts in phrases.items():
            for text in texts:
                table[tuple(text.split())] = ("background", value)
    for value, texts in COUNT_PHRASES.items():
        for text in texts:
            table[tuple(text.split())] = ("count", value)
    return sorted(table.items(), key=lambda item: -len(item[0]))


_PHRASES = _phrase_table()
_DISTRACTOR_MARKERS = frozenset(p.split()[0] for p in DISTRACTOR_PHRASES)


@lru_cache(maxsize=65536)
def caption_attributes(caption):
    """The attributes of the main object a scene caption states, as a dict.

    Keys among shape, colour, size, position, background and count; synonyms read
    as their value ("disc" is a circle). Words after "next to", "beside" or
    "near" describe a distractor and are ignored.

    Examples
    --------
    >>> caption_attributes("a photo of a small crimson disc next to a blue star.")
    {'size': 'small', 'colour': 'crimson', 'shape': 'circle'}
    >>> caption_attributes("a ring on a checkerboard, one of two objects.")
    {'shape': 'ring', 'background': 'checkered', 'count': 'two'}
    """
    words = _WORD.findall(caption.lower())
    found, i, in_distractor = {}, 0, False
    while i < len(words):
        if words[i] in _DISTRACTOR_MARKERS:
            in_distractor = True
        if words[i] in (",", "."):
            in_distractor = False
        for phrase, (attribute, value) in _PHRASES:
            if tuple(words[i : i + len(phrase)]) == phrase:
                keep = not in_distractor or attribute in ("background", "count")
                if keep and attribute not in found:
                    found[attribute] = value
                i += len(phrase) - 1
                break
        i += 1
    return found


# Weights of the attributes in attribute_distance (the shape and colour of the
# main object are what captions are mostly about).
ATTRIBUTE_WEIGHTS = {
    "shape": 0.35,
    "colour": 0.3,
    "background": 0.15,
    "size": 0.08,
    "count": 0.07,
    "position": 0.05,
}


@cache
def _similarity_tables():
    tables = {}
    for attribute in ATTRIBUTE_WEIGHTS:
        values = sorted({v for world in WORLDS.values() for v in world.get(attribute, ())})
        index = {v: i for i, v in enumerate(values)}
        table = np.eye(len(values), dtype=np.float32)
        for a, b in NEAR_NEIGHBOURS.get(attribute, ()):
            table[index[a], index[b]] = table[index[b], index[a]] = 0.5
        tables[attribute] = (index, table)
    return tables


def attribute_distance(captions):
    """A graded semantic distance between scene captions, from their parsed attributes.

    ``D_ij = 1 - S_ij``, ``S_ij`` the weighted mean, over the attributes either
    caption states (:data:`ATTRIBUTE_WEIGHTS`), of 1 for the same value (synonyms
    included), 0.5 for near neighbours (:data:`NEAR_NEIGHBOURS`) or when only one
    caption states the attribute, and 0 for different values. The diagonal is 0.
    This is the offline stand-in for AlignCLIP's SBERT distance (seed 004, Eq. 8):
    "a red disc" and "a photo of a circle in red" are at distance 0, a red and a
    crimson circle at 0.15, a red circle and a blue star at 1.

    Returns
    -------
    ndarray of shape (n, n), float32, symmetric, values in [0, 1].

    Examples
    --------
    >>> attribute_distance(["a red disc.", "a red circle.", "a crimson circle.",
    ...                     "a blue star."]).round(3)
    array([[0.   , 0.   , 0.231, 1.   ],
           [0.   , 0.   , 0.231, 1.   ],
           [0.231, 0.231, 0.   , 1.   ],
           [1.   , 1.   , 1.   , 0.   ]], dtype=float32)
    """
    parsed = [caption_attributes(c) for c in captions]
    n = len(parsed)
    numerator = np.zeros((n, n), dtype=np.float32)
    denominator = np.zeros((n, n), dtype=np.float32)
    for attribute, (index, table) in _similarity_tables().items():
        codes = np.array([index.get(p.get(attribute), -1) for p in parsed])
        stated = codes >= 0
        if not stated.any():
            continue
        both = stated[:, None] & stated[None, :]
        either = stated[:, None] | stated[None, :]
        safe = np.where(stated, codes, 0)
        similarity = np.where(both, table[safe[:, None], safe[None, :]], 0.5)
        weight = ATTRIBUTE_WEIGHTS[attribute]
        numerator += weight * np.where(either, similarity, 0.0)
        denominator += weight * either
    similarity = np.divide(
        numerator, denominator, out=np.ones_like(numerator), where=denominator > 0
    )
    distance = 1.0 - similarity
    np.fill_diagonal(distance, 0.0)
    return distance.astype(np.float32)


def _unit_rows(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def zero_shot_accuracy(image_embeddings, encode_texts, scenes, factors=None, templates=None):
    """Zero-shot accuracy of a CLIP-style model on scenes, per labelling.

    Each class's weight is the normalised mean of its prompts' normalised text
    embeddings (CLIP's prompt ensembling); an image is assigned the class of
    highest cosine.

    Parameters
    ----------
    image_embeddings : array of shape (n, d)
        Embeddings of ``scenes.images``.
    encode_texts : callable
        list of str -> array of shape (m, d).
    scenes : Bunch
        From :func:`~skvlm.datasets.make_scenes` (``codes``, ``factor_names``).
    factors : list of str or None
        Labellings to score; None is every one the world has templates for.
    templates : dict or None
        Factor -> list of templates; None is :func:`zero_shot_templates` of the
        scenes' world.

    Returns
    -------
    dict mapping ``factor`` to accuracy, and ``chance_<factor>`` to 1 / n_classes.
    """
    version = int(scenes.get("version", 1))
    templates = templates or zero_shot_templates(version)
    factors = [f for f in templates if f in scenes.codes] if factors is None else list(factors)
    images = _unit_rows(image_embeddings)
    scores = {}
    for factor in factors:
        names = zero_shot_class_names(factor, scenes.factor_names[factor])
        prompts = [_fix_articles(t.format(name)) for name in names for t in templates[factor]]
        text = _unit_rows(encode_texts(prompts)).reshape(len(names), len(templates[factor]), -1)
        weights = _unit_rows(text.mean(axis=1))
        predicted = (images @ weights.T).argmax(axis=1)
        scores[factor] = float(np.mean(predicted == scenes.codes[factor]))
        scores[f"chance_{factor}"] = 1.0 / len(names)
    return scores
