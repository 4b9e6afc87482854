"""Procedural captioned scenes, in three worlds (``make_scenes(..., version=)``).

``version=1`` (the default, unchanged): one coloured object on a grey background.
``version=2``: a main object among distractors on coloured, textured backgrounds,
with occlusion, lighting, blur and noise (:mod:`skvlm.datasets._scenes_v2`).
``version=3``: world 2's images with captions that use look-alike shape names
loosely; the world the tiny model zoo is trained on. The words of every world
live in :mod:`skvlm.datasets._world`.

In the first world every factor (shape, colour, size, position, background) is drawn independently, so
any of them can serve as "the class". Labelling by shape uses a concept the class
names describe; labelling by background uses one they do not, which reproduces
offline the task ambiguity of Herzog & Wang's BDD100k ablation (seed 002).

Backgrounds are grey only, so that an object's colour is never ambiguous. Images
are rendered with signed-distance masks (one pixel of anti-aliasing), vectorised
over the whole batch; captions are assembled from varied phrasings that mention
some factors and omit others, and always name the shape or the colour.
"""

import numpy as np
from sklearn.utils import Bunch

from ._world import (
    BACKGROUND_PHRASES_V1 as _BACKGROUND_PHRASES,
)
from ._world import (
    BACKGROUNDS_V1 as BACKGROUNDS,
)
from ._world import (
    COLOURS_V1 as COLOURS,
)
from ._world import (
    OPENINGS as _OPENINGS,
)
from ._world import (
    POSITION_PHRASES as _POSITION_PHRASES,
)
from ._world import (
    POSITIONS,
    SIZES,
    WORLDS,
    _fix_articles,
    check_version,
)
from ._world import (
    SHAPE_FALLBACK as _SHAPE_FALLBACK,
)
from ._world import (
    SHAPES_V1 as SHAPES,
)
from ._world import caption_vocabulary as _world_vocabulary

FACTOR_NAMES = dict(WORLDS[1])

_RGB = np.array(
    [
        [225, 35, 35],
        [245, 135, 20],
        [235, 215, 35],
        [40, 175, 55],
        [35, 205, 215],
        [40, 70, 225],
        [135, 45, 200],
        [245, 115, 190],
    ],
    dtype=np.float32,
)

# Object radius and centre as fractions of the image side.
_RADIUS = np.array([0.17, 0.29], dtype=np.float32)
_CENTRE = 0.3
_JITTER = 0.05
_MAX_ROTATION = np.deg2rad(15.0)

_P_COLOUR, _P_SHAPE, _P_SIZE, _P_POSITION, _P_BACKGROUND = 0.8, 0.8, 0.4, 0.3, 0.3


def caption_vocabulary(version=1):
    """Every word (and punctuation mark) a :func:`make_scenes` caption can contain.

    Parameters
    ----------
    version : {1, 2, 3, None}, default=1
        The world (see :func:`make_scenes`); None is the union of all worlds.

    Examples
    --------
    >>> words = caption_vocabulary()
    >>> {"circle", "crescent", "striped", "."} <= set(words)
    True
    """
    return _world_vocabulary(version)


def _check_random_state(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31))
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    raise ValueError(
        f"random_state must be None, an int, or a numpy Generator/RandomState, got "
        f"{random_state!r}."
    )


def _shape_distance(shape, u, v):
    """Approximate signed distance to a unit-radius shape (negative inside)."""
    rho = np.sqrt(u * u + v * v)
    if shape == "circle":
        return rho - 0.95
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.78
    if shape == "triangle":
        # Equilateral, apex up (image rows grow downwards): three half-planes.
        d = v - 0.5
        for angle in (np.pi / 6, 5 * np.pi / 6):
            d = np.maximum(d, -(u * np.cos(angle) + v * np.sin(angle)) - 0.5)
        return d
    if shape == "star":
        phi = np.arctan2(u, -v)
        t = np.abs(((phi / (2 * np.pi / 5)) % 1.0) * 2.0 - 1.0)  # 0 at a tip, 1 between
        return rho - (1.0 - 0.58 * t)
    if shape == "cross":
        arm_h = np.maximum(np.abs(u) - 0.92, np.abs(v) - 0.3)
        arm_v = np.maximum(np.abs(u) - 0.3, np.abs(v) - 0.92)
        return np.minimum(arm_h, arm_v)
    if shape == "ring":
        return np.abs(rho - 0.75) - 0.22
    if shape == "diamond":
        return (np.abs(u) / 0.62 + np.abs(v)) * 0.53 - 0.53
    if shape == "crescent":
        bite = np.sqrt((u - 0.45) ** 2 + (v + 0.15) ** 2) - 0.75
        return np.maximum(rho - 0.95, -bite)
    raise AssertionError(shape)


def _render_backgrounds(kind, rng, size):
    """Grey backgrounds, (n, size, size) float32 in [0, 255]."""
    n = len(kind)
    grid = np.arange(size, dtype=np.float32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    level = rng.uniform(-12, 12, n).astype(np.float32)[:, None, None]
    out = np.empty((n, size, size), dtype=np.float32)
    for index, name in enumerate(BACKGROUNDS):
        rows = np.flatnonzero(kind == index)
        m = len(rows)
        if m == 0:
            continue
        if name == "dark":
            bg = np.full((m, size, size), 35.0, dtype=np.float32)
        elif name == "light":
            bg = np.full((m, size, size), 205.0, dtype=np.float32)
        elif name == "striped":
            angle = rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4], m).astype(np.float32)
            period = rng.uniform(4, 7, m).astype(np.float32)[:, None, None]
            along = xx * np.cos(angle)[:, None, None] + yy * np.sin(angle)[:, None, None]
            bg = np.where((along / period) % 1.0 < 0.5, 85.0, 165.0).astype(np.float32)
        elif name == "dotted":
            step = rng.integers(5, 8, m)[:, None, None].astype(np.float32)
            du = (xx + 0.5) % step - step / 2
            dv = (yy + 0.5) % step - step / 2
            bg = np.where(du * du + dv * dv <= 2.5, 175.0, 95.0).astype(np.float32)
        else:
            bg = rng.uniform(55, 195, (m, size, size)).astype(np.float32)
        out[rows] = bg
    return out + level


def _render(factors, rng, size):
    n = len(factors["shape"])
    radius = _RADIUS[factors["size"]] * size * rng.uniform(0.9, 1.1, n).astype(np.float32)
    right = np.isin(factors["position"], (1, 3))
    bottom = factors["position"] >= 2
    cx = (np.where(right, 1 - _CENTRE, _CENTRE) + rng.uniform(-_JITTER, _JITTER, n)).astype(
        np.float32
    )
    cy = (np.where(bottom, 1 - _CENTRE, _CENTRE) + rng.uniform(-_JITTER, _JITTER, n)).astype(
        np.float32
    )
    theta = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION, n).astype(np.float32)
    rgb = _RGB[factors["colour"]] * rng.uniform(0.85, 1.1, (n, 1)).astype(np.float32)
    rgb = np.clip(rgb + rng.uniform(-15, 15, (n, 3)).astype(np.float32), 0, 255)
    background = _render_backgrounds(factors["background"], rng, size)

    pixel = (np.arange(size, dtype=np.float32) + 0.5) / size
    alpha = np.empty((n, size, size), dtype=np.float32)
    for index, shape in enumerate(SHAPES):
        rows = np.flatnonzero(factors["shape"] == index)
        if len(rows) == 0:
            continue
        r = (radius[rows] / size)[:, None, None]
        dx = (pixel[None, None, :] - cx[rows, None, None]) / r
        dy = (pixel[None, :, None] - cy[rows, None, None]) / r
        cos = np.cos(theta[rows])[:, None, None]
        sin = np.sin(theta[rows])[:, None, None]
        u = cos * dx + sin * dy
        v = -sin * dx + cos * dy
        # Distance in units of the radius -> pixels; one pixel of soft edge.
        distance = _shape_distance(shape, u, v) * radius[rows, None, None]
        alpha[rows] = np.clip(0.5 - distance, 0.0, 1.0)
    # Channel-first blending keeps every array operation contiguous (a trailing
    # axis of 3 makes numpy's broadcasting several times slower).
    image = np.empty((n, 3, size, size), dtype=np.float32)
    for channel in range(3):
        np.multiply(rgb[:, channel, None, None] - background, alpha, out=image[:, channel])
        image[:, channel] += background
    np.clip(image + 0.5, 0, 255, out=image)
    return np.ascontiguousarray(image.astype(np.uint8).transpose(0, 2, 3, 1))


def _captions(factors, rng):
    n = len(factors["shape"])
    opening = rng.integers(0, len(_OPENINGS), n).tolist()
    mention = rng.random((n, 5)) < [_P_COLOUR, _P_SHAPE, _P_SIZE, _P_POSITION, _P_BACKGROUND]
    mention[:, 1] |= ~mention[:, 0]  # name the shape whenever the colour is left out
    show_colour, show_shape, show_size, show_position, show_background = mention.T.tolist()
    fallback = rng.integers(0, len(_SHAPE_FALLBACK), n).tolist()
    position_phrase = rng.integers(0, len(_POSITION_PHRASES), n).tolist()
    background_phrase = rng.integers(0, 3, n).tolist()
    background_first = (rng.random(n) < 0.5).tolist()
    shape, colour, size, position, background = (
        factors[name].tolist() for name in ("shape", "colour", "size", "position", "background")
    )

    captions = []
    for i in range(n):
        words = []
        if show_size[i]:
            words.append(SIZES[size[i]])
        if show_colour[i]:
            words.append(COLOURS[colour[i]])
        words.append(SHAPES[shape[i]] if show_shape[i] else _SHAPE_FALLBACK[fallback[i]])
        extras = []
        if show_position[i]:
            extras.append(_POSITION_PHRASES[position_phrase[i]].format(POSITIONS[position[i]]))
        if show_background[i]:
            extras.append(_BACKGROUND_PHRASES[BACKGROUNDS[background[i]]][background_phrase[i]])
        if background_first[i]:
            extras.reverse()
        text = _OPENINGS[opening[i]].format(" ".join(words + extras))
        captions.append(_fix_articles(text) if "a " in text else text)
    return captions


def make_scenes(n_samples, image_size=32, random_state=None, as_frame=True, version=1):
    """Generate captioned images of objects on backgrounds, with their factors.

    Shape, colour, size, position (quadrant) and background are drawn independently
    and uniformly. Each caption names the shape or the colour (at least one of the
    two) and mentions the size, position and background only sometimes, in varied
    phrasings, so a caption is a partial, noisy description of its image.

    ``version=1`` (default) is the first world: one object of 8 shapes and 8
    colours on 5 grey backgrounds; the output for a seed never changes.
    ``version=2`` is the harder world: a main
    object (12 shapes, 12 colours with near neighbours such as red/crimson and
    circle/hexagon) and 0-2 smaller distractors of random shape and colour, which
    may occlude it; 8 tinted backgrounds (dark, light, gradient, striped, wavy,
    checkered, dotted, noisy); random lighting, blur on a third of the images,
    pixel noise. Its factors describe the main object plus ``count`` (1-3
    objects), so a scene can be labelled by shape, colour, background or count.
    Captions sometimes use synonyms ("disc", "box") and describe a distractor
    ("next to a blue star") or the count ("with one other object").
    ``version=3``, the world the tiny model zoo is trained on, has world 2's
    images for a seed, pixel for pixel, and its captions but for three pairs of
    look-alike shapes (circle/hexagon, square/rectangle, ring/crescent): a
    caption calls either shape of a pair by either name, half of the time each,
    and states the difference with another word in 60 % of them ("smooth" or
    "angular", "even" or "long", "closed" or "open"). A zero-shot prompt with the
    class name cannot tell a pair apart; an image embedding trained on the other
    words can, which leaves few-shot methods room over zero-shot.

    Parameters
    ----------
    n_samples : int
        Number of images.
    image_size : int, default=32
        Side of the square images in pixels (at least 8).
    random_state : int, numpy Generator, RandomState or None, default=None
        Seeds a local generator; the same value gives the same scenes.
    as_frame : bool, default=True
        ``factors`` as a pandas DataFrame (needs pandas) or, when False, a dict of
        string arrays.
    version : {1, 2, 3}, default=1
        The world (see above).

    Returns
    -------
    scenes : Bunch
        - ``images``: ndarray of shape (n_samples, image_size, image_size, 3), uint8
        - ``captions``: list of str
        - ``factors``: DataFrame (or dict) with string columns shape, colour, size,
          position, background
        - ``factor_names``: dict mapping each factor to its ordered list of values,
          e.g. ``factor_names["shape"]`` are the class names of a shape labelling
        - ``codes``: dict mapping each factor to an int array of indices into
          ``factor_names[factor]``
        - ``version``: the world
        - ``distractors`` (versions 2 and 3): dict of int arrays ``scene``, ``shape``,
          ``colour`` (codes into the factor names), one entry per distractor

    Examples
    --------
    >>> scenes = make_scenes(4, random_state=0)
    >>> scenes.images.shape, scenes.images.dtype
    ((4, 32, 32, 3), dtype('uint8'))
    >>> list(scenes.factors.columns)
    ['shape', 'colour', 'size', 'position', 'background']
    >>> scenes.factor_names["background"]
    ['dark', 'light', 'striped', 'dotted', 'noisy']
    >>> make_scenes(4, random_state=0).captions == scenes.captions
    True
    >>> hard = make_scenes(4, random_state=0, version=2)
    >>> list(hard.factors.columns)
    ['shape', 'colour', 'size', 'position', 'background', 'count']
    """
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative int, got {n_samples!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}.")
    version = check_version(version)
    scenes = _generate(n_samples, int(image_size), _check_random_state(random_state), version)
    if as_frame:
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "make_scenes(as_frame=True) needs pandas: pip install 'skvlm[pandas]', "
                "or pass as_frame=False."
            ) from exc
        scenes.factors = pd.DataFrame(scenes.factors)
    return scenes


def _generate(n_samples, image_size, rng, version):
    """The scenes of a world as a Bunch (factors as a dict of string arrays)."""
    names = WORLDS[version]
    codes = {name: rng.integers(0, len(values), n_samples) for name, values in names.items()}
    extra = {}
    if version == 1:
        images = _render(codes, rng, image_size)
        captions = _captions(codes, rng)
    else:
        from ._scenes_v2 import captions_v2, render_v2

        images, distractors = render_v2(codes, rng, image_size)
        captions = captions_v2(codes, distractors, rng, version=version)
        extra["distractors"] = {k: distractors[k] for k in ("scene", "shape", "colour")}
    factors = {name: np.asarray(names[name], dtype=object)[code] for name, code in codes.items()}
    return Bunch(
        images=images,
        captions=captions,
        factors=factors,
        factor_names={name: list(values) for name, values in names.items()},
        codes=codes,
        version=version,
        **extra,
    )
