"""CODERClassifier and LinearProbeClassifier: formulas by hand, against the reference math."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skvlm import CODERClassifier, LinearProbeClassifier
from skvlm.classifiers import param_grid, select_params


def _unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


# ---------------------------------------------------------------- CODER by hand


def test_coder_hand_case_with_an_identity_bank():
    # bank = eye(2): phi(x) = x/|x|. Keys (1,0) class a, (0,1) class b. Query (3,4)/5:
    # A = (0.6, 0.8) -> min-max (0, 1); beta 1: exp(-1) = 0.367879 (a), exp(0) = 1 (b);
    # text eye(2): 100 * (0.6, 0.8); alpha 2 -> (60.735759, 82).
    clf = CODERClassifier(alpha=2.0, beta=1.0, text_bank=np.eye(2), text_weights=np.eye(2))
    clf.fit([[1.0, 0.0], [0.0, 1.0]], ["a", "b"])
    np.testing.assert_allclose(clf._scores([[3.0, 4.0]]), [[60.735759, 82.0]], rtol=1e-6)


def test_coder_hand_case_with_a_middle_affinity():
    # Keys (1,0) a, (0,1) b, (1,1)/sqrt2 b; query (3,4)/5: A = (0.6, 0.8, 0.989949);
    # min-max -> (0, 0.2/0.389949 = 0.512887, 1); beta 2: exp(-2), exp(-0.974226), 1 =
    # 0.135335, 0.377484, 1 -> cache a = 0.135335, b = 1.377484; alpha 1.
    clf = CODERClassifier(alpha=1.0, beta=2.0, text_bank=np.eye(2), text_weights=np.eye(2))
    clf.fit([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], ["a", "b", "b"])
    np.testing.assert_allclose(clf._scores([[3.0, 4.0]]), [[60.135335, 81.377484]], rtol=1e-6)
    # temperature 2 halves the rescaled affinity: (0, 0.256443, 0.5) -> exp(-2 (1 - .))
    # = 0.135335, 0.226508, 0.367879 -> a 0.135335, b 0.594387.
    clf.set_params(temperature=2.0).fit([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], ["a", "b", "b"])
    np.testing.assert_allclose(clf._scores([[3.0, 4.0]]), [[60.135335, 80.594387]], rtol=1e-5)


def test_coder_representation_is_the_normalised_cosines_to_the_bank():
    # bank rows (1,0), (0,1), (1,1)/sqrt2; x = (1,0): cosines (1, 0, 0.707107), norm
    # sqrt(1.5) = 1.224745 -> (0.816497, 0, 0.577350).
    bank = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    clf = CODERClassifier(text_bank=bank, text_weights=np.eye(2)).fit(
        [[2.0, 0.0], [0.0, 1.0]], [0, 1]
    )
    np.testing.assert_allclose(
        clf.cache_keys_, [[0.816497, 0.0, 0.577350], [0.0, 0.816497, 0.577350]], atol=1e-6
    )


def test_coder_single_support_row_has_no_cache_information():
    # one key per query: A is constant, the rescaled affinity is 0 -> cache = exp(-beta)
    clf = CODERClassifier(alpha=1.0, beta=3.0, text_bank=np.eye(2), text_weights=np.eye(2))
    clf.fit([[1.0, 0.0]], [0])  # integer label 0 indexes row 0 of the text weights
    np.testing.assert_allclose(clf._scores([[0.0, 1.0]]), [[np.exp(-3.0)]], rtol=1e-6)


# ---------------------------------------------------------------- CODER vs its reference


def _reference_coder_logits(texts, keys_img, key_labels, val_img, clip_weights, alpha, beta, T):
    """The reference's math, transcribed (torch, float64 as it casts keys and features).

    CODER.get_general_CODER / utils.build_cache (keys), utils.get_clip_logits +
    load_test_features (queries), utils.test_model + minmax_normalization (scores),
    classify_few_shot.py clip_logits = 100 * ori_features @ clip_classifier.
    """
    import torch
    import torch.nn.functional as F

    texts = torch.tensor(texts, dtype=torch.float64)
    keys = torch.tensor(keys_img, dtype=torch.float64)
    keys = keys / keys.norm(dim=-1, keepdim=True)
    general = F.normalize(texts, p=2, dim=1)
    keys = F.normalize(keys, p=2, dim=1) @ general.T
    keys = keys / keys.norm(dim=-1, keepdim=True)
    cache_keys = keys.permute(1, 0)
    cache_values = F.one_hot(torch.tensor(key_labels)).double()
    ori = torch.tensor(val_img, dtype=torch.float64)
    ori = ori / ori.norm(dim=-1, keepdim=True)
    feats = F.normalize(ori, p=2, dim=1) @ F.normalize(texts, p=2, dim=1).T
    feats = feats / feats.norm(dim=-1, keepdim=True)
    clip_logits = 100 * ori @ torch.tensor(clip_weights, dtype=torch.float64)
    affinity = feats @ cache_keys
    row_max, row_min = affinity.max(dim=1).values, affinity.min(dim=1).values
    affinity = (affinity - row_min.view(-1, 1)) / (row_max - row_min).view(-1, 1)
    affinity = affinity / T
    metric = ((-1) * (beta - beta * affinity)).exp()
    return (clip_logits + (metric @ cache_values) * alpha).numpy()


@pytest.mark.parametrize("alpha, beta, T", [(1.66, 72.0, 1.0), (3.0, 10.0, 2.0)])
def test_coder_matches_the_reference_math(alpha, beta, T):
    rng = np.random.default_rng(0)
    n_classes, d, m = 4, 12, 20
    centers = rng.normal(size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), 3)
    X = centers[y] + 0.7 * rng.normal(size=(len(y), d))
    order = rng.permutation(len(y))  # support order must not matter
    Q = centers[rng.integers(0, n_classes, 15)] + 0.7 * rng.normal(size=(15, d))
    texts = np.vstack(
        [centers + 0.5 * rng.normal(size=(n_classes, d)), rng.normal(size=(m - n_classes, d))]
    )
    W = _unit(centers + 0.5 * rng.normal(size=(n_classes, d)))
    expected = _reference_coder_logits(texts, X, y, Q, W.T, alpha, beta, T)
    clf = CODERClassifier(
        alpha=alpha, beta=beta, temperature=T, text_bank=texts, text_weights=W, batch_size=4
    )
    clf.fit(X[order], y[order])
    np.testing.assert_allclose(clf._scores(Q), expected, rtol=1e-5, atol=1e-4)


class _PromptEncoder:
    def __init__(self, d=6):
        self.d = d
        self.seen = []

    def encode_text(self, texts):
        self.seen.append(list(texts))
        return np.array(
            [np.random.default_rng(len(t) + 7 * t.count("a")).normal(size=self.d) for t in texts]
        )


def test_coder_default_bank_is_every_prompt_as_a_row():
    enc = _PromptEncoder()
    templates = ["a photo of a {}.", "art of the {}."]
    X = np.random.default_rng(1).normal(size=(4, 6))
    clf = CODERClassifier(
        encoder=enc, templates=templates, descriptions={"cat": ["furry"], "sea_lion": []}
    )
    clf.fit(X, ["cat", "cat", "sea_lion", "sea_lion"])
    prompts = [
        "a photo of a cat.",
        "art of the cat.",
        "furry",
        "a photo of a sea lion.",
        "art of the sea lion.",
    ]
    assert enc.seen[-1] == prompts
    np.testing.assert_allclose(
        clf.text_bank_, _unit(_PromptEncoder().encode_text(prompts)), atol=1e-6
    )


def test_coder_bad_bank_width_and_grid():
    with pytest.raises(ValueError, match="text bank has width 3 but X has 2"):
        CODERClassifier(text_bank=np.eye(3), text_weights=np.eye(2)).fit(np.eye(2), [0, 1])
    grid = param_grid(CODERClassifier, "reference")
    assert len(grid["beta"]) == 500 and grid["beta"][1] == pytest.approx(0.1 + 199.9 / 500)
    assert len(grid["alpha"]) == 50 and grid["alpha"][-1] == pytest.approx(0.1 + 49 * 19.9 / 50)


# ---------------------------------------------------------------- linear probe


@pytest.mark.parametrize("n_classes", [2, 4])
def test_linear_probe_is_logistic_regression_on_unit_rows(n_classes):
    rng = np.random.default_rng(n_classes)
    y = np.repeat(np.arange(n_classes), 6)
    X = rng.normal(size=(len(y), 5)) + 2 * np.eye(n_classes, 5)[y]
    Q = rng.normal(size=(9, 5))
    ours = LinearProbeClassifier(C=3.0).fit(X, y)
    ref = LogisticRegression(C=3.0, max_iter=1000).fit(_unit(X), y)
    np.testing.assert_allclose(
        ours.predict_proba(Q), ref.predict_proba(_unit(Q)), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        ours.decision_function(Q), ref.decision_function(_unit(Q)), rtol=1e-4, atol=1e-5
    )
    assert (ours.predict(Q) == ref.predict(_unit(Q))).all()
    raw = LinearProbeClassifier(C=3.0, normalize=False).fit(X, y)
    np.testing.assert_allclose(
        raw.predict_proba(Q),
        LogisticRegression(C=3.0, max_iter=1000).fit(X, y).predict_proba(Q),
        rtol=1e-4,
        atol=1e-6,
    )


def test_linear_probe_grid_and_validation_choice():
    grid = param_grid(LinearProbeClassifier, "reference")["C"]
    assert len(grid) == 96 and grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e6)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 4)
    X = rng.normal(size=(12, 8)) + 1.5 * np.eye(3, 8)[y]
    yv = np.repeat(np.arange(3), 5)
    Xv = rng.normal(size=(15, 8)) + 1.5 * np.eye(3, 8)[yv]
    best, table = select_params(LinearProbeClassifier(), X, y, Xv, yv, {"C": [1e-4, 100.0]})
    accs = [np.mean(LinearProbeClassifier(C=c).fit(X, y).predict(Xv) == yv) for c in (1e-4, 100.0)]
    np.testing.assert_allclose(table["accuracy"], accs)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbeClassifier().fit(X[:4], [0, 0, 0, 0])
