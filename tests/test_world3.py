"""World 3: world 2's scenes with look-alike shape names used loosely in the captions."""

import re
import warnings

import numpy as np
import pytest

from skvlm.datasets import caption_attributes, caption_vocabulary, make_scenes
from skvlm.datasets._world import (
    LOOSE_NAME_PAIRS,
    SHAPE_ADJECTIVES,
    SHAPE_SYNONYMS,
    zero_shot_templates,
)

N = 4000
PARTNER = {a: b for pair in LOOSE_NAME_PAIRS for a, b in (pair, pair[::-1])}
ADJECTIVE_WORDS = set(SHAPE_ADJECTIVES.values())


@pytest.fixture(scope="module")
def worlds():
    return (
        make_scenes(N, random_state=5, version=2, as_frame=False),
        make_scenes(N, random_state=5, version=3, as_frame=False),
    )


def _truth(scenes, factor):
    return np.asarray(scenes.factor_names[factor])[scenes.codes[factor]]


def _first_distractor_shapes(scenes):
    """The shape of each scene's first distractor ("" for a scene without one)."""
    first = np.full(len(scenes.captions), "", dtype=object)
    names = np.asarray(scenes.factor_names["shape"])
    for scene, shape in zip(scenes.distractors["scene"][::-1], scenes.distractors["shape"][::-1]):
        first[scene] = names[shape]
    return first


def test_same_images_factors_and_distractors_as_world_two(worlds):
    two, three = worlds
    np.testing.assert_array_equal(two.images, three.images)
    for factor in two.codes:
        np.testing.assert_array_equal(two.codes[factor], three.codes[factor])
    for key in ("scene", "shape", "colour"):
        np.testing.assert_array_equal(two.distractors[key], three.distractors[key])
    assert three.version == 3 and three.factor_names == two.factor_names


def test_captions_change_only_where_a_paired_shape_is_in_the_scene(worlds):
    two, three = worlds
    main, distractor = _truth(two, "shape"), _first_distractor_shapes(two)
    untouched = ~np.isin(main, list(PARTNER)) & ~np.isin(distractor, list(PARTNER))
    assert untouched.sum() > N / 4
    for i in np.flatnonzero(untouched):
        assert two.captions[i] == three.captions[i]
    changed = np.mean([a != b for a, b in zip(two.captions, three.captions)])
    assert changed > 0.3


def test_paired_names_are_used_half_of_the_time_each_and_others_truthfully(worlds):
    _, three = worlds
    main = _truth(three, "shape")
    own = {shape: 0 for shape in PARTNER}
    partner = dict(own)
    for caption, shape in zip(three.captions, main):
        stated = caption_attributes(caption).get("shape")
        if stated is None:
            continue
        if shape in PARTNER:
            own[shape] += stated == shape
            partner[shape] += stated == PARTNER[shape]
            assert stated in (shape, PARTNER[shape]), caption
        else:
            assert stated == shape, caption
    for shape in PARTNER:
        rate = partner[shape] / (own[shape] + partner[shape])
        assert 0.4 < rate < 0.6, (shape, rate)


def test_paired_shapes_are_never_called_by_a_synonym(worlds):
    _, three = worlds
    synonyms = {s for shape in PARTNER for s in SHAPE_SYNONYMS.get(shape, ()) if s != shape}
    pattern = re.compile(r"\b(" + "|".join(sorted(synonyms)) + r")\b")
    main = _truth(three, "shape")
    for caption, shape in zip(three.captions, main):
        if shape in PARTNER:
            before_distractor = re.split(r"\b(next to|beside|near)\b", caption)[0]
            assert not pattern.search(before_distractor), caption


def test_the_adjective_tells_a_pair_apart_truthfully(worlds):
    _, three = worlds
    main = _truth(three, "shape")
    stated = {shape: 0 for shape in PARTNER}
    for caption, shape in zip(three.captions, main):
        words = set(re.findall(r"[a-z]+", caption))
        said = words & ADJECTIVE_WORDS
        if shape in PARTNER:
            assert said <= {SHAPE_ADJECTIVES[shape]}, caption
            stated[shape] += bool(said)
        else:
            assert not said, caption
    for shape, count in stated.items():
        rate = count / np.sum(main == shape)
        assert 0.5 < rate < 0.7, (shape, rate)


def test_distractors_of_paired_shapes_are_named_loosely_too(worlds):
    _, three = worlds
    distractor = _first_distractor_shapes(three)
    swapped = kept = 0
    for caption, shape in zip(three.captions, distractor):
        if shape not in PARTNER:
            continue
        tail = re.split(r"\b(?:next to|beside|near) an? ", caption)
        if len(tail) < 2:
            continue
        named = set(re.findall(r"[a-z]+", tail[1])) & {shape, PARTNER[shape]}
        swapped += PARTNER[shape] in named
        kept += shape in named
    assert swapped > 30 and kept > 30
    assert 0.35 < swapped / (swapped + kept) < 0.65


def test_world_three_words_are_known_and_captions_fit_the_context(worlds):
    from skvlm.models._registry import vocab_words
    from skvlm.models._tokenizer import CompactTokenizer

    _, three = worlds
    words = set(caption_vocabulary(3))
    assert ADJECTIVE_WORDS <= words and ADJECTIVE_WORDS <= set(caption_vocabulary(None))
    assert not ADJECTIVE_WORDS & set(caption_vocabulary(2))
    for caption in three.captions:
        assert set(re.findall(r"[a-z]+|[^\sa-z]", caption)) <= words, caption
    tokenizer = CompactTokenizer(vocab_words(), context_length=24)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = tokenizer(three.captions)
    assert not ((ids >= tokenizer.first_bucket_id) & (ids < tokenizer.sot_id)).any()
    assert int((ids > 0).sum(axis=1).max()) <= 24
    assert zero_shot_templates(3) == zero_shot_templates(2)


def test_world_three_is_deterministic_for_a_seed():
    a = make_scenes(64, random_state=9, version=3, as_frame=False)
    b = make_scenes(64, random_state=np.random.default_rng(9), version=3, as_frame=False)
    assert a.captions == b.captions
    assert make_scenes(64, random_state=10, version=3, as_frame=False).captions != a.captions
