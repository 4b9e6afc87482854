"""The second scene world: a main object among distractors, textures, light, blur, noise.

Rendering is vectorised over the batch, as in the first world: signed-distance
masks with one pixel of soft edge, grouped by shape; the objects of all scenes
are composited layer by layer (distractors behind the main object, the main
object, distractors in front of it, which may occlude it). The vocabulary and
the caption wording live in :mod:`skvlm.datasets._world`.
"""

import numpy as np

from ._world import (
    BACKGROUND_PHRASES_V2,
    COUNT_PHRASES,
    DISTRACTOR_PHRASES,
    LOOSE_NAME_PAIRS,
    LOOSE_NAME_RATE,
    OPENINGS,
    POSITION_PHRASES,
    SHAPE_ADJECTIVE_RATE,
    SHAPE_ADJECTIVES,
    SHAPE_FALLBACK,
    SHAPE_SYNONYMS,
    WORLDS,
    _fix_articles,
)

FACTORS = WORLDS[2]
SHAPES, COLOURS, BACKGROUNDS = FACTORS["shape"], FACTORS["colour"], FACTORS["background"]

# Near neighbours are close in RGB too (red/crimson, blue/navy, teal/cyan...).
_RGB = np.array(
    [
        [225, 40, 35],
        [160, 20, 60],
        [245, 140, 25],
        [235, 215, 40],
        [160, 230, 50],
        [35, 150, 50],
        [25, 140, 130],
        [40, 210, 220],
        [45, 90, 230],
        [25, 35, 120],
        [140, 50, 200],
        [245, 120, 190],
    ],
    dtype=np.float32,
)
_MAIN_RADIUS = np.array([0.25, 0.35], dtype=np.float32)
_DISTRACTOR_RADIUS = (0.08, 0.11)
_CENTRE, _JITTER = 0.32, 0.06
_MAX_ROTATION = np.deg2rad(20.0)
_P_FRONT = 0.25  # a distractor drawn over the main object (occlusion)
_P_BLUR = 0.2
_MAX_NOISE = 6.0


def _sdf(shape, u, v):
    """Approximate signed distance to a unit-radius shape (negative inside)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return np.sqrt(u * u + v * v) - 0.95
    if shape == "hexagon":
        return np.maximum(av, au * 0.866 + av * 0.5) - 0.84
    if shape == "square":
        return np.maximum(au, av) - 0.78
    if shape == "rectangle":
        return np.maximum(au - 0.95, av - 0.5)
    if shape == "triangle":
        d = v - 0.5
        for angle in (np.pi / 6, 5 * np.pi / 6):
            d = np.maximum(d, -(u * np.cos(angle) + v * np.sin(angle)) - 0.5)
        return d
    if shape == "arrow":
        shaft = np.maximum(av - 0.22, np.maximum(-0.92 - u, u - 0.1))
        head = np.maximum(0.0 - u, av - 0.62 * (0.95 - u))
        return np.minimum(shaft, head)
    if shape == "diamond":
        return (au / 0.62 + av) * 0.53 - 0.53
    if shape == "star":
        phi = np.arctan2(u, -v)
        t = np.abs(((phi / (2 * np.pi / 5)) % 1.0) * 2.0 - 1.0)
        return np.sqrt(u * u + v * v) - (1.0 - 0.58 * t)
    if shape == "cross":
        return np.minimum(np.maximum(au - 0.92, av - 0.3), np.maximum(au - 0.3, av - 0.92))
    if shape == "ring":
        return np.abs(np.sqrt(u * u + v * v) - 0.75) - 0.22
    if shape == "crescent":
        bite = np.sqrt((u - 0.45) ** 2 + (v + 0.15) ** 2) - 0.75
        return np.maximum(np.sqrt(u * u + v * v) - 0.95, -bite)
    if shape == "heart":
        lobes = np.sqrt((au - 0.42) ** 2 + (v + 0.3) ** 2) - 0.5
        point = np.maximum(0.752 * au + 0.662 * v - 0.6, -v - 0.3)
        return np.minimum(lobes, point)
    raise AssertionError(shape)


def _backgrounds(kind, rng, size):
    """Tinted, textured backgrounds, (n, 3, size, size) float32."""
    n = len(kind)
    grid = np.arange(size, dtype=np.float32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    tone = np.empty((n, size, size), dtype=np.float32)
    for index, name in enumerate(BACKGROUNDS):
        rows = np.flatnonzero(kind == index)
        m = len(rows)
        if m == 0:
            continue
        angle = rng.uniform(0, np.pi, m).astype(np.float32)[:, None, None]
        period = rng.uniform(4, 7, m).astype(np.float32)[:, None, None]
        if name in ("gradient", "striped", "wavy"):
            along = xx * np.cos(angle) + yy * np.sin(angle)
        if name == "dark":
            bg = np.float32(45)
        elif name == "light":
            bg = np.float32(200)
        elif name == "gradient":
            bg = 70 + 110 * (along - along.min(axis=(1, 2), keepdims=True)) / (1.5 * size)
        elif name == "striped":
            bg = np.where((along / period) % 1.0 < 0.5, np.float32(105), np.float32(150))
        elif name == "wavy":
            across = yy * np.cos(angle) - xx * np.sin(angle)
            bend = 1.6 * np.sin(across / rng.uniform(2.5, 4, m).astype(np.float32)[:, None, None])
            bg = 128 + 22 * np.sin(2 * np.pi * (along + bend) / period)
        elif name == "checkered":
            cell = rng.integers(3, 6, m)[:, None, None]
            bg = np.where(((xx // cell) + (yy // cell)) % 2 == 0, np.float32(105), np.float32(150))
        elif name == "dotted":
            du = (xx + 0.5) % period - period / 2
            dv = (yy + 0.5) % period - period / 2
            bg = np.where(du * du + dv * dv <= 2.5, np.float32(155), np.float32(105))
        else:
            bg = rng.random((m, size, size), dtype=np.float32) * 70 + 93
        tone[rows] = bg
    tint = rng.uniform(-35, 35, (n, 3)).astype(np.float32) + rng.uniform(-12, 12, (n, 1)).astype(
        np.float32
    )
    return tone[:, None] + tint[:, :, None, None]


def _objects(codes, rng):
    """Every object of every scene: scene index, shape, rgb, radius, centre, angle, layer."""
    n = len(codes["shape"])
    right = np.isin(codes["position"], (1, 3))
    bottom = codes["position"] >= 2
    main = {
        "scene": np.arange(n),
        "shape": codes["shape"],
        "colour": codes["colour"],
        "radius": _MAIN_RADIUS[codes["size"]] * rng.uniform(0.9, 1.1, n).astype(np.float32),
        "cx": np.where(right, 1 - _CENTRE, _CENTRE) + rng.uniform(-_JITTER, _JITTER, n),
        "cy": np.where(bottom, 1 - _CENTRE, _CENTRE) + rng.uniform(-_JITTER, _JITTER, n),
        "layer": np.ones(n, dtype=np.int64),
    }
    slots = np.arange(2)[None, :] < codes["count"][:, None]  # count 0/1/2 = 1/2/3 objects
    scene = np.nonzero(slots)[0]
    m = len(scene)
    distractors = {
        "scene": scene,
        "shape": rng.integers(0, len(SHAPES), m),
        "colour": rng.integers(0, len(COLOURS), m),
        "radius": rng.uniform(*_DISTRACTOR_RADIUS, m).astype(np.float32),
        "cx": rng.uniform(0.12, 0.88, m),
        "cy": rng.uniform(0.12, 0.88, m),
        "layer": np.where(rng.random(m) < _P_FRONT, 2, 0),
    }
    objects = {k: np.concatenate([main[k], distractors[k]]) for k in main}
    total = len(objects["scene"])
    objects["theta"] = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION, total).astype(np.float32)
    rgb = _RGB[objects["colour"]] * rng.uniform(0.85, 1.1, (total, 1)).astype(np.float32)
    objects["rgb"] = np.clip(rgb + rng.uniform(-18, 18, (total, 3)).astype(np.float32), 0, 255)
    return objects, distractors


def _alphas(objects, size):
    pixel = (np.arange(size, dtype=np.float32) + 0.5) / size
    alpha = np.empty((len(objects["scene"]), size, size), dtype=np.float32)
    for index, shape in enumerate(SHAPES):
        rows = np.flatnonzero(objects["shape"] == index)
        if len(rows) == 0:
            continue
        r = objects["radius"][rows, None, None]
        dx = (pixel[None, None, :] - objects["cx"][rows, None, None].astype(np.float32)) / r
        dy = (pixel[None, :, None] - objects["cy"][rows, None, None].astype(np.float32)) / r
        cos = np.cos(objects["theta"][rows])[:, None, None]
        sin = np.sin(objects["theta"][rows])[:, None, None]
        distance = _sdf(shape, cos * dx + sin * dy, -sin * dx + cos * dy) * (r * size)
        alpha[rows] = np.clip(0.5 - distance, 0.0, 1.0)
    return alpha


def _finish(image, rng, size):
    """Lighting (brightness and a linear ramp), blur on some images, pixel noise."""
    n = len(image)
    grid = np.arange(size, dtype=np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    ramp = grid[None, None, :] * np.cos(angle) + grid[None, :, None] * np.sin(angle)
    light = rng.uniform(0.75, 1.2, n).astype(np.float32)[:, None, None] * (
        1 + rng.uniform(0, 0.5, n).astype(np.float32)[:, None, None] * ramp
    )
    image *= light[:, None]
    blur = np.flatnonzero(rng.random(n) < _P_BLUR)
    if len(blur):
        padded = np.pad(image[blur], ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        rows = padded[:, :, :-2] + 2 * padded[:, :, 1:-1] + padded[:, :, 2:]
        image[blur] = (rows[..., :-2] + 2 * rows[..., 1:-1] + rows[..., 2:]) / 16
    sigma = rng.uniform(0, _MAX_NOISE, n).astype(np.float32)[:, None, None, None]
    image += sigma * rng.standard_normal(image.shape, dtype=np.float32)
    np.clip(image + 0.5, 0, 255, out=image)
    return np.ascontiguousarray(image.astype(np.uint8).transpose(0, 2, 3, 1))


def _composite(image, alpha, rgb, scene):
    """Paint objects (alpha masks, colours) over their scenes; scenes must be distinct."""
    patch = image[scene]
    patch += alpha[:, None] * (rgb[:, :, None, None] - patch)
    image[scene] = patch


def render_v2(codes, rng, size):
    """Images of the scenes whose factor codes are ``codes``; returns images and distractors."""
    objects, distractors = _objects(codes, rng)
    image = _backgrounds(codes["background"], rng, size)
    alpha = _alphas(objects, size)
    n = len(codes["shape"])
    for layer in (0, 1, 2):
        if layer == 1:  # the main objects: rows 0..n-1, one per scene, in order
            for channel in range(3):
                plane = image[:, channel]
                plane += alpha[:n] * (objects["rgb"][:n, channel, None, None] - plane)
            continue
        index = np.flatnonzero(objects["layer"] == layer)
        # At most two distractors of a scene share a layer: composite them in groups
        # that never repeat a scene, so the fancy-indexed writes do not collide.
        for group in _unique_scene_groups(objects["scene"][index]):
            rows = index[group]
            _composite(image, alpha[rows], objects["rgb"][rows], objects["scene"][rows])
    return _finish(image, rng, size), distractors


def _unique_scene_groups(scenes):
    """Split positions into groups whose scene indices are distinct (first/second occurrence)."""
    if len(scenes) == 0:
        return []
    first = np.ones(len(scenes), dtype=bool)
    first[1:] = scenes[1:] != scenes[:-1]  # objects of a scene are contiguous
    return (
        [np.flatnonzero(first), np.flatnonzero(~first)]
        if (~first).any()
        else [np.flatnonzero(first)]
    )


# World 3: each shape's look-alike partner (codes), -1 for shapes named strictly.
_PARTNER = np.full(len(SHAPES), -1)
for _a, _b in LOOSE_NAME_PAIRS:
    _PARTNER[SHAPES.index(_a)], _PARTNER[SHAPES.index(_b)] = SHAPES.index(_b), SHAPES.index(_a)


def _loose_names(shapes, rng):
    """The shape code a world-3 caption names for each shape code: a paired shape
    is called by its partner's name at :data:`LOOSE_NAME_RATE`."""
    shapes = np.asarray(shapes)
    swap = (rng.random(len(shapes)) < LOOSE_NAME_RATE) & (_PARTNER[shapes] >= 0)
    return np.where(swap, _PARTNER[shapes], shapes).tolist()


def _describe_distractor(shape, colour, show_colour, show_shape):
    words = [COLOURS[colour]] if show_colour else []
    words.append(SHAPES[shape] if show_shape or not show_colour else "object")
    return " ".join(words)


def captions_v2(codes, distractors, rng, version=2):
    """Captions naming some attributes of the main object and sometimes of a distractor.

    ``version=3`` draws the same captions but for the names of the paired shapes
    (:data:`LOOSE_NAME_PAIRS`, used loosely, never replaced by a synonym) and an
    adjective that tells a pair apart; its extra random draws come after all of
    world 2's, so world 2's captions never change.
    """
    n = len(codes["shape"])
    opening = rng.integers(0, len(OPENINGS), n).tolist()
    mention = rng.random((n, 7)) < [0.5, 0.9, 0.35, 0.2, 0.35, 0.35, 0.2]
    mention[:, 1] |= ~mention[:, 0]
    synonym = rng.random(n) < 0.3
    choice = rng.integers(0, 6, (n, 4)).tolist()
    order = rng.random((n, 4)).argsort(axis=1).tolist()
    first_distractor = np.full(n, -1)
    first_distractor[distractors["scene"][::-1]] = np.arange(len(distractors["scene"]))[::-1]
    d_colour = rng.random(n) < 0.5
    named_shape = codes["shape"].tolist()
    named_distractor = list(distractors["shape"])
    adjective = [None] * n
    if version == 3:
        named_shape = _loose_names(codes["shape"], rng)
        named_distractor = _loose_names(distractors["shape"], rng)
        stated = rng.random(n) < SHAPE_ADJECTIVE_RATE
        adjective = [
            SHAPE_ADJECTIVES.get(SHAPES[s]) if on else None
            for s, on in zip(codes["shape"].tolist(), stated.tolist())
        ]
    values = {k: codes[k].tolist() for k in ("colour", "size", "position", "background", "count")}
    captions = []
    for i in range(n):
        colour_on, shape_on, size_on, position_on, background_on, distractor_on, count_on = mention[
            i
        ]
        shape = SHAPES[named_shape[i]]
        # World 3 never gives a paired shape a synonym: "disc" would name the circle.
        loose_pairs = version == 3 and _PARTNER[named_shape[i]] >= 0
        if not shape_on:
            shape = SHAPE_FALLBACK[choice[i][0] % 2]
        elif synonym[i] and shape in SHAPE_SYNONYMS and not loose_pairs:
            shape = SHAPE_SYNONYMS[shape][1]
        words = (
            ([FACTORS["size"][values["size"][i]]] if size_on else [])
            + ([COLOURS[values["colour"][i]]] if colour_on else [])
            + ([adjective[i]] if adjective[i] else [])
            + [shape]
        )
        extras = [None] * 4
        if position_on:
            extras[0] = POSITION_PHRASES[choice[i][1] % 3].format(
                FACTORS["position"][values["position"][i]]
            )
        if background_on:
            extras[1] = BACKGROUND_PHRASES_V2[BACKGROUNDS[values["background"][i]]][
                choice[i][2] % 3
            ]
        j = first_distractor[i]
        if distractor_on and j >= 0:
            what = _describe_distractor(
                named_distractor[j], distractors["colour"][j], d_colour[i], choice[i][3] % 3 > 0
            )
            extras[2] = DISTRACTOR_PHRASES[choice[i][3] % 3].format(what)
        if count_on:
            extras[3] = COUNT_PHRASES[FACTORS["count"][values["count"][i]]][choice[i][3] % 2]
        chosen = [extras[k] for k in order[i] if extras[k] is not None][:2]
        captions.append(_fix_articles(OPENINGS[opening[i]].format(" ".join(words + chosen))))
    return captions
