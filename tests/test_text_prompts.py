"""Prompts as the references build them: descriptions mixed with templates, `_` -> space,
the default templates, the zero-shot logit scale, un-normalised rows after PCA←."""

import numpy as np
import pytest

from skvlm._text import class_text_embeddings, display_name, resolve_templates
from skvlm.classifiers import (
    APEClassifier,
    LDAClassifier,
    NearestPrototype,
    TipAdapterClassifier,
    TipXClassifier,
    ZeroShotClassifier,
)


class WordEncoder:
    """Stand-in text tower: a text's embedding counts its words in a fixed vocabulary."""

    VOCAB = ["photo", "cat", "dog", "golden", "retriever", "furry", "barks", "a", "of"]

    def __init__(self):
        self.seen = []

    def encode_text(self, texts):
        self.seen.extend(texts)
        out = np.zeros((len(texts), len(self.VOCAB)))
        for row, text in enumerate(texts):
            for word in text.replace(".", " ").split():
                if word in self.VOCAB:
                    out[row, self.VOCAB.index(word)] += 1.0
        return out + 1e-3  # no zero rows


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_descriptions_join_the_templates_in_one_mean_of_normalised_embeddings():
    enc = WordEncoder()
    W = class_text_embeddings(
        enc.encode_text, ["cat"], ["a photo of a {}."], {"cat": ["furry cat", "furry"]}
    )
    assert enc.seen == ["a photo of a cat.", "furry cat", "furry"]
    rows = _unit(enc.encode_text(["a photo of a cat.", "furry cat", "furry"]))
    np.testing.assert_allclose(W[0], _unit(rows.mean(axis=0)), atol=1e-6)
    # hand check of the mean direction: three unit vectors, one mean, one normalisation
    assert W.shape == (1, len(WordEncoder.VOCAB))


def test_descriptions_alone_with_empty_templates_and_per_class_counts_may_differ():
    enc = WordEncoder()
    descriptions = {"cat": ["furry"], "dog": ["barks", "dog barks", "furry dog"]}
    W = class_text_embeddings(
        enc.encode_text, ["cat", "dog"], resolve_templates([], allow_empty=True), descriptions
    )
    np.testing.assert_allclose(W[0], _unit(enc.encode_text(["furry"]))[0], atol=1e-6)
    np.testing.assert_allclose(
        W[1], _unit(_unit(enc.encode_text(descriptions["dog"])).mean(0)), atol=1e-6
    )


def test_a_description_mapping_that_misses_a_class_names_it():
    enc = WordEncoder()
    with pytest.raises(ValueError, match=r"no entry for class 'dog' \(closest keys: \['dgo'\]\)"):
        class_text_embeddings(
            enc.encode_text, ["cat", "dog"], ["{}"], {"cat": ["furry"], "dgo": ["x"]}
        )
    with pytest.raises(ValueError, match=r"no prompt"):
        class_text_embeddings(enc.encode_text, ["cat"], [], {"cat": []})
    with pytest.raises(ValueError, match="only allowed with class descriptions"):
        resolve_templates([])
    clf = ZeroShotClassifier(encoder=enc, descriptions={"cat": ["furry"]})
    with pytest.raises(ValueError, match="class 'dog'"):
        clf.fit(np.ones((2, 9)), ["cat", "dog"])
    with pytest.raises(ValueError, match="text_weights was given"):
        ZeroShotClassifier(text_weights=np.eye(2), descriptions={"a": []}).fit(
            np.eye(2), ["a", "b"]
        )


@pytest.mark.parametrize(
    "cls", [ZeroShotClassifier, LDAClassifier, TipAdapterClassifier, TipXClassifier, APEClassifier]
)
def test_every_text_classifier_takes_descriptions(cls):
    enc = WordEncoder()
    descriptions = {"cat": ["furry cat"], "dog": ["dog barks"]}
    X = np.tile(np.eye(9)[[1, 2]], (2, 1)) + 0.01
    clf = cls(encoder=enc, descriptions=descriptions, templates="a photo of a {}.").fit(
        X, ["cat", "dog"] * 2
    )
    assert "furry cat" in enc.seen and "a photo of a dog." in enc.seen
    expected = class_text_embeddings(
        WordEncoder().encode_text, ["cat", "dog"], ["a photo of a {}."], descriptions
    )
    np.testing.assert_allclose(clf.text_weights_, expected, atol=1e-6)


def test_underscores_become_spaces_in_lists_and_string_labels():
    assert display_name("golden_retriever") == "golden retriever"
    enc = WordEncoder()
    ZeroShotClassifier(encoder=enc, templates="a photo of a {}.").fit(
        np.ones((1, 9)), ["golden_retriever"]
    )
    assert enc.seen == ["a photo of a golden retriever."]
    enc = WordEncoder()
    ZeroShotClassifier(encoder=enc, class_names=["golden_retriever", "cat"], templates="{}").fit(
        np.ones((2, 9)), [0, 1]
    )
    assert enc.seen == ["golden retriever", "cat"]
    # descriptions keyed by the name as given still match
    enc = WordEncoder()
    ZeroShotClassifier(encoder=enc, templates=[], descriptions={"golden_retriever": ["furry"]}).fit(
        np.ones((1, 9)), ["golden_retriever"]
    )
    assert enc.seen == ["furry"]


def test_default_templates_are_the_seven_simple_ones():
    for cls in (
        ZeroShotClassifier,
        LDAClassifier,
        TipAdapterClassifier,
        TipXClassifier,
        APEClassifier,
    ):
        assert cls().templates == "simple"
    enc = WordEncoder()
    ZeroShotClassifier(encoder=enc).fit(np.ones((1, 9)), ["cat"])
    assert enc.seen == [t.format("cat") for t in resolve_templates("simple")] and len(enc.seen) == 7


class _FakeModel:
    def __init__(self, log_scale):
        import torch

        self.logit_scale = torch.nn.Parameter(torch.tensor(log_scale))


class _FakeLoaded:
    def __init__(self, log_scale):
        self.model = _FakeModel(log_scale)


class ScaledEncoder(WordEncoder):
    def __init__(self, log_scale):
        super().__init__()
        self._loaded = _FakeLoaded(log_scale)


def test_zero_shot_logit_scale_fixed_or_the_models_own():
    X = np.eye(2)
    fixed = ZeroShotClassifier(text_weights=np.eye(2), logit_scale=10.0).fit(X, [0, 1])
    # query (3, 4)/5: cosines 0.6, 0.8 -> scores 6, 8 at scale 10
    np.testing.assert_allclose(fixed.decision_function([[3.0, 4.0]]), [8.0 - 6.0], atol=1e-5)
    model = ZeroShotClassifier(
        text_weights=np.eye(2), logit_scale="model", encoder=ScaledEncoder(np.log(31.7))
    )
    model.fit(X, [0, 1])
    assert model.logit_scale_ == pytest.approx(31.7, rel=1e-5)
    np.testing.assert_allclose(
        model.predict_proba([[3.0, 4.0]])[0, 1], 1 / (1 + np.exp(-0.2 * 31.7)), rtol=1e-5
    )
    assert ZeroShotClassifier(text_weights=np.eye(2)).fit(X, [0, 1]).logit_scale_ == 100.0
    with pytest.raises(ValueError, match="has no"):
        ZeroShotClassifier(text_weights=np.eye(2), logit_scale="model", encoder=WordEncoder()).fit(
            X, [0, 1]
        )


def test_prototype_and_lda_can_use_rows_as_given():
    # rows of different norms: (3, 0) and (0, 1) of class a average to (1.5, 0.5) as given,
    # (0.5, 0.5) once normalised; class b is (0, -1). The query (1, 1): cosine to
    # (1.5, 0.5)/|.| = 2/sqrt(2.5)/sqrt(2) = 0.8944; to (1, 1)/sqrt2 = 1.
    X = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    y = ["a", "a", "b"]
    raw = NearestPrototype(normalize=False).fit(X, y)
    unit = NearestPrototype().fit(X, y)
    np.testing.assert_allclose(raw.prototypes_[0], _unit([1.5, 0.5]), atol=1e-6)
    np.testing.assert_allclose(unit.prototypes_[0], _unit([0.5, 0.5]), atol=1e-6)
    np.testing.assert_allclose(
        raw.decision_function([[1.0, 1.0]]), [-0.707107 - 0.894427], atol=1e-5
    )
    # GDA on rows as given equals GDA on unit rows that happen to be those rows
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(12, 4))
    yz = np.repeat([0, 1, 2], 4)
    Q = rng.normal(size=(5, 4))
    # projected rows are shorter than unit, by different amounts (a global scale
    # would cancel out of GDA's scores)
    R = rng.uniform(0.2, 1.0, size=(12, 1)) * _unit(Z)
    raw = LDAClassifier(normalize=False).fit(R, yz)
    unit = LDAClassifier().fit(R, yz)
    assert not np.allclose(raw.decision_function(Q), unit.decision_function(Q), atol=1e-2)
    # reference math on the rows as given: Λ = D pinv((N-1) Σ + tr(Σ) I), w = Λ μ
    mus = np.stack([R[yz == c].mean(0) for c in range(3)])
    centred = R - mus[yz]
    cov = np.cov(centred.T)
    prec = 4 * np.linalg.pinv((12 - 1) * cov + np.trace(cov) * np.eye(4))
    expected = Q @ (mus @ prec).T + (np.log(1 / 3) - 0.5 * np.einsum("cd,de,ce->c", mus, prec, mus))
    np.testing.assert_allclose(raw.decision_function(Q), expected, rtol=1e-4, atol=1e-4)
