import itertools
import re

import numpy as np
import pytest

from skvlm.datasets import FACTOR_NAMES, _scenes, caption_vocabulary, make_scenes

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(3000, random_state=0)


def test_shapes_and_types(scenes):
    assert scenes.images.shape == (3000, 32, 32, 3)
    assert scenes.images.dtype == np.uint8
    assert len(scenes.captions) == 3000 and all(isinstance(c, str) for c in scenes.captions)
    assert list(scenes.factors.columns) == ["shape", "colour", "size", "position", "background"]
    assert len(scenes.factors) == 3000
    for factor, names in scenes.factor_names.items():
        assert names == list(FACTOR_NAMES[factor])
        assert set(scenes.factors[factor]) <= set(names)
        np.testing.assert_array_equal(
            np.asarray(names, dtype=object)[scenes.codes[factor]], scenes.factors[factor]
        )


def test_other_image_size_and_dict_factors():
    small = make_scenes(5, image_size=16, random_state=1, as_frame=False)
    assert small.images.shape == (5, 16, 16, 3)
    assert isinstance(small.factors, dict) and len(small.factors["shape"]) == 5
    assert make_scenes(0, random_state=0).images.shape == (0, 32, 32, 3)


def test_deterministic_per_random_state():
    a, b = make_scenes(50, random_state=7), make_scenes(50, random_state=7)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions
    pd.testing.assert_frame_equal(a.factors, b.factors)
    c = make_scenes(50, random_state=8)
    assert not np.array_equal(a.images, c.images)
    d = make_scenes(50, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(a.images, d.images)


@pytest.mark.parametrize(
    "kwargs", [{"n_samples": -1}, {"n_samples": 2.5}, {"n_samples": 3, "image_size": 4}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="n_samples|image_size"):
        make_scenes(**kwargs)


def test_bad_random_state():
    with pytest.raises(ValueError, match="random_state"):
        make_scenes(3, random_state="seed")


def test_factors_are_independent_and_balanced():
    from scipy.stats import chi2_contingency

    factors = make_scenes(20000, random_state=3, as_frame=False).codes
    for name, codes in factors.items():
        counts = np.bincount(codes, minlength=len(FACTOR_NAMES[name]))
        assert counts.min() > 0.8 * len(codes) / len(counts)
    for a, b in itertools.combinations(factors, 2):
        table = np.zeros((len(FACTOR_NAMES[a]), len(FACTOR_NAMES[b])))
        np.add.at(table, (factors[a], factors[b]), 1)
        assert chi2_contingency(table).pvalue > 1e-4, (a, b)


def test_backgrounds_are_grey_away_from_the_object(scenes):
    # The quadrant diagonally opposite the object never contains it.
    images = scenes.images.astype(int)
    opposite = {
        "top left": (slice(20, 32), slice(20, 32)),
        "top right": (slice(20, 32), slice(0, 12)),
        "bottom left": (slice(0, 12), slice(20, 32)),
        "bottom right": (slice(0, 12), slice(0, 12)),
    }
    for position, (rows, cols) in opposite.items():
        patch = images[np.asarray(scenes.factors["position"] == position)][:, rows, cols]
        assert np.all(patch[..., 0] == patch[..., 1]) and np.all(patch[..., 1] == patch[..., 2])


def test_object_colour_is_recognisable(scenes):
    images = scenes.images.astype(np.float32)
    saturation = images.max(axis=-1) - images.min(axis=-1)
    mask = saturation > 60  # object pixels; backgrounds are grey (saturation 0)
    assert mask.reshape(len(images), -1).any(axis=1).all()
    means = (images * mask[..., None]).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))[:, None]
    nearest = np.linalg.norm(means[:, None, :] - _scenes._RGB[None], axis=-1).argmin(axis=1)
    assert np.mean(nearest == scenes.codes["colour"]) > 0.97


def test_sizes_differ(scenes):
    saturation = scenes.images.max(axis=-1).astype(int) - scenes.images.min(axis=-1)
    area = (saturation > 60).sum(axis=(1, 2))
    large = np.asarray(scenes.factors["size"] == "large")
    assert np.median(area[large]) > 2 * np.median(area[~large])


def test_captions_name_shape_or_colour_correctly(scenes):
    for caption, (_, row) in zip(scenes.captions, scenes.factors.iterrows()):
        words = set(re.findall(r"[a-z]+", caption))
        named_shapes = words & set(FACTOR_NAMES["shape"])
        named_colours = words & set(FACTOR_NAMES["colour"])
        assert named_shapes or named_colours, caption
        assert named_shapes <= {row["shape"]}, caption
        assert named_colours <= {row["colour"]}, caption
        named_sizes = words & set(FACTOR_NAMES["size"])
        assert named_sizes <= {row["size"]}, caption


def test_captions_vary_and_omit_factors(scenes):
    captions = scenes.captions
    assert len(set(captions)) > len(captions) / 2
    mentions = {
        "shape": np.mean([s in c for c, s in zip(captions, scenes.factors["shape"])]),
        "colour": np.mean([s in c for c, s in zip(captions, scenes.factors["colour"])]),
        "position": np.mean([p in c for c, p in zip(captions, scenes.factors["position"])]),
        "background": np.mean(
            ["background" in c or "behind" in c or " on " in c or "dark" in c for c in captions]
        ),
    }
    for factor, rate in mentions.items():
        assert 0.1 < rate < 1.0, (factor, rate)
    assert not any(re.search(r"\ba [aeiou]", c) for c in captions)


def test_caption_vocabulary_covers_every_word(scenes):
    words = set(caption_vocabulary())
    for caption in scenes.captions:
        assert set(re.findall(r"[a-z]+|[^\sa-z]", caption)) <= words, caption


def test_speed_is_vectorised():
    # A sanity check without a timing assert: many images in one call.
    assert make_scenes(10000, random_state=0, as_frame=False).images.shape[0] == 10000


# --------------------------------------------------------------- tiny-model vocabulary


@pytest.fixture(scope="module")
def tokenizer():
    from skvlm.models._registry import vocab_words
    from skvlm.models._tokenizer import CompactTokenizer

    return CompactTokenizer(vocab_words(), context_length=24)


def test_vocab_file_has_every_caption_word(tokenizer, scenes):
    ids = tokenizer(scenes.captions)
    hashed = (ids >= tokenizer.first_bucket_id) & (ids < tokenizer.sot_id)
    assert not hashed.any(), tokenizer.unknown_words(scenes.captions)
    assert tokenizer.unknown_words(caption_vocabulary()) == []


def test_vocab_file_has_every_template_word(tokenizer):
    from skvlm._text import resolve_templates

    texts = [t.format("") for t in resolve_templates("openai") + resolve_templates("simple")]
    assert tokenizer.unknown_words(texts) == []


def test_longest_possible_caption_is_not_truncated(tokenizer):
    longest_words = "large cyan crescent {} {}"
    captions = [
        opening.format(longest_words.format(position.format("bottom right"), background))
        for opening in _scenes._OPENINGS
        for position in _scenes._POSITION_PHRASES
        for phrases in _scenes._BACKGROUND_PHRASES.values()
        for background in phrases
    ]
    ids = tokenizer(captions, context_length=64)
    assert int((ids > 0).sum(axis=1).max()) <= 24
