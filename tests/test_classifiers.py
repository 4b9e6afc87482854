"""Formulas, properties and bad inputs of skvlm.classifiers.

Each formula is pinned twice: by a small case worked by hand (numbers in the
comments), and against a direct numpy transcription of the reference code (the
ICLR24 GDA, Tip-Adapter, SuS-X ``tipx.py`` and APE repositories) on random features.
"""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skvlm.classifiers import (
    APEClassifier,
    LDAClassifier,
    NearestPrototype,
    TipAdapterClassifier,
    TipXClassifier,
    ZeroShotClassifier,
)


def _unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _softmax(S, axis=-1):
    E = np.exp(S - S.max(axis=axis, keepdims=True))
    return E / E.sum(axis=axis, keepdims=True)


@pytest.fixture
def problem():
    """Random few-shot problem: 5 classes x 4 shots, 16-d, 30 queries, text weights."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 16))
    y = np.repeat(np.arange(5), 4)
    X = centers[y] + 0.8 * rng.normal(size=(20, 16))
    yq = rng.integers(0, 5, 30)
    Q = centers[yq] + 0.8 * rng.normal(size=(30, 16))
    W = centers + 0.5 * rng.normal(size=(5, 16))
    return X, y, Q, yq, W


# ---------------------------------------------------------------- NearestPrototype


def test_nearest_prototype_hand_case():
    # a-rows normalise to (0.6, 0.8) and (0, 1): mean (0.3, 0.9) -> (0.3162, 0.9487);
    # b's prototype is (1, 0). Query (1, 1)/sqrt2: cos a = 1.2/sqrt(0.9)/sqrt2 = 0.8944,
    # cos b = 0.7071.
    clf = NearestPrototype().fit([[3.0, 4.0], [0.0, 2.0], [5.0, 0.0]], ["a", "a", "b"])
    np.testing.assert_allclose(clf.prototypes_, [[0.316228, 0.948683], [1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(
        clf.decision_function([[1.0, 1.0]]), [0.707107 - 0.894427], atol=1e-6
    )
    np.testing.assert_allclose(
        clf.predict_proba([[1.0, 1.0]]), _softmax(np.array([[0.894427, 0.707107]])), atol=1e-6
    )
    assert clf.predict([[1.0, 1.0], [1.0, -0.2]]).tolist() == ["a", "b"]


def test_nearest_prototype_ignores_row_scale(problem):
    X, y, Q, _, _ = problem
    scaled = NearestPrototype().fit(X * np.arange(1, 21)[:, None], y)
    plain = NearestPrototype().fit(X, y)
    np.testing.assert_allclose(scaled.prototypes_, plain.prototypes_, atol=1e-6)
    np.testing.assert_allclose(
        scaled.decision_function(3 * Q), plain.decision_function(Q), atol=1e-6
    )


# ---------------------------------------------------------------- ZeroShot + text weights


def test_zero_shot_scores_are_100_cosines():
    # query (3, 4, 0) has cosines 0.6, 0.8, 0 with the axes.
    clf = ZeroShotClassifier(text_weights=2 * np.eye(3)).fit(np.eye(3), [0, 1, 2])
    np.testing.assert_allclose(
        clf.decision_function([[3.0, 4.0, 0.0]]), [[60.0, 80.0, 0.0]], atol=1e-4
    )
    np.testing.assert_allclose(
        clf.predict_proba([[3.0, 4.0, 0.0]]), _softmax(np.array([[60.0, 80.0, 0.0]])), atol=1e-6
    )
    assert clf.predict([[3.0, 4.0, 0.0]]).tolist() == [1]


def test_text_weight_rows_follow_class_names_then_sorted_classes_then_integer_labels():
    W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    X = np.eye(3)
    named = ZeroShotClassifier(text_weights=W, class_names=["zebra", "ant", "cat"]).fit(
        X, ["cat", "zebra", "ant"]
    )
    # classes_ = [ant, cat, zebra] -> rows 1, 2, 0 of W
    np.testing.assert_array_equal(named.text_weights_, W[[1, 2, 0]])
    sorted_rows = ZeroShotClassifier(text_weights=W).fit(X, ["c", "a", "b"])
    np.testing.assert_array_equal(sorted_rows.text_weights_, W)
    by_index = ZeroShotClassifier(text_weights=W).fit(X[:2], [2, 0])  # 3 rows, 2 classes
    np.testing.assert_array_equal(by_index.text_weights_, W[[0, 2]])
    by_call = ZeroShotClassifier(text_weights=lambda classes, d: W[: len(classes), :d]).fit(
        X, [5, 6, 7]
    )
    np.testing.assert_array_equal(by_call.text_weights_, W)


def test_text_weight_mismatches_are_clear_errors():
    X, y = np.eye(3), ["a", "b", "c"]
    with pytest.raises(ValueError, match="width 2 but X has 3 features"):
        ZeroShotClassifier(text_weights=np.eye(3, 2)).fit(X, y)
    with pytest.raises(ValueError, match=r"has 2 rows for the 3 classes \['a', 'b', 'c'\]"):
        ZeroShotClassifier(text_weights=np.eye(2, 3)).fit(X, y)
    with pytest.raises(ValueError, match=r"labels \['kat'\].*closest names to 'kat': \['cat'\]"):
        ZeroShotClassifier(text_weights=np.eye(3), class_names=["a", "b", "cat"]).fit(
            X, ["a", "b", "kat"]
        )
    with pytest.raises(ValueError, match="class_names has 2 names"):
        ZeroShotClassifier(text_weights=np.eye(3), class_names=["a", "b"]).fit(X, y)
    with pytest.raises(ValueError, match="one row per class"):
        ZeroShotClassifier(text_weights=lambda c, d: np.ones((1, d))).fit(X, y)
    with pytest.raises(ValueError, match="integer labels"):
        ZeroShotClassifier().fit(X, [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        ZeroShotClassifier(text_weights=np.full((3, 3), np.nan)).fit(X, y)


@pytest.mark.parametrize(
    "clf",
    [
        NearestPrototype(),
        LDAClassifier(),
        TipAdapterClassifier(),
        ZeroShotClassifier(text_weights=np.eye(3)),
        TipXClassifier(text_weights=np.eye(3)),
        APEClassifier(text_weights=np.eye(3)),
    ],
    ids=lambda c: type(c).__name__,
)
@pytest.mark.filterwarnings("ignore:LDAClassifier.*collapse")
def test_nan_and_wrong_width_are_rejected(clf):
    X, y = np.eye(3), [0, 1, 2]
    with pytest.raises(ValueError, match="NaN"):
        clone(clf).fit(np.where(X == 1, np.nan, X), y)
    fitted = clone(clf).fit(X, y)
    with pytest.raises(ValueError, match="3 features"):
        fitted.predict(np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict([[np.nan, 0.0, 1.0]])


# ---------------------------------------------------------------- LDA / GDA


def _reference_gda(X, y, Q, W=None, alpha=1.0):
    """numpy transcription of mrflogs/ICLR24 main_few_shots.py (one augment epoch)."""
    vecs = _unit(X)
    C = y.max() + 1
    mus = np.stack([vecs[y == i].mean(axis=0) for i in range(C)])
    center = np.concatenate([vecs[y == i] - mus[i] for i in range(C)])
    cov = np.cov(center.T)  # torch's center_vecs.T.cov(): rows are variables, N - 1
    d = center.shape[1]
    cov_inv = d * np.linalg.pinv((center.shape[0] - 1) * cov + np.trace(cov) * np.eye(d))
    ps = np.ones(C) / C
    Wl = np.einsum("nd,dc->cn", mus, cov_inv)
    b = np.log(ps) - np.einsum("nd,dc,nc->n", mus, cov_inv, mus) / 2
    feats = _unit(Q)
    lda = feats @ Wl + b
    return lda if W is None else 100.0 * feats @ _unit(W).T + alpha * lda


def test_lda_hand_case():
    # Unit rows (±c, ±s) with c = cos 30°, s = sin 30°: class means (±c, 0); the
    # centred rows are (0, ±s), so (N-1)Σ = diag(0, 4 s²) = diag(0, 1), tr Σ = 1/3 and
    # Λ = 2 · diag(3, 1/(1 + 1/3)) = diag(6, 1.5). coef = (±6c, 0) = (±5.196, 0),
    # intercept = log 1/2 − ½ · 6 c² = −0.6931 − 2.25.
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    X = np.array([[c, s], [c, -s], [-c, s], [-c, -s]])
    clf = LDAClassifier().fit(X, [0, 0, 1, 1])
    np.testing.assert_allclose(clf.precision_, np.diag([6.0, 1.5]), atol=1e-5)
    np.testing.assert_allclose(clf.coef_, [[5.196152, 0.0], [-5.196152, 0.0]], atol=1e-5)
    np.testing.assert_allclose(clf.intercept_, [-2.943147, -2.943147], atol=1e-5)
    # binary decision: score1 − score0 at x = (1, 0) is −2 · 5.196
    np.testing.assert_allclose(clf.decision_function([[1.0, 0.0]]), [-10.392305], atol=1e-4)


def test_lda_matches_reference_with_and_without_text(problem):
    X, y, Q, _, W = problem
    np.testing.assert_allclose(
        LDAClassifier().fit(X, y).decision_function(Q),
        _reference_gda(X, y, Q),
        rtol=1e-4,
        atol=1e-3,
    )
    np.testing.assert_allclose(
        LDAClassifier(alpha=0.3, text_weights=W).fit(X, y).decision_function(Q),
        _reference_gda(X, y, Q, W, alpha=0.3),
        rtol=1e-4,
        atol=1e-3,
    )


def test_lda_scores_are_affine_in_the_normalised_query(problem):
    X, y, Q, _, _ = problem
    clf = LDAClassifier().fit(X, y)
    U = _unit(Q)
    scores = clf.decision_function(U)
    np.testing.assert_allclose(scores, U @ clf.coef_.T + clf.intercept_, rtol=1e-5, atol=1e-4)
    # affine: f(u) - f(v) depends on u - v only through coef_
    np.testing.assert_allclose(
        scores[0] - scores[1], (U[0] - U[1]) @ clf.coef_.T, rtol=1e-5, atol=1e-4
    )


def test_lda_one_shot_collapse_is_reproduced_and_warned():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, 8))
    with pytest.warns(UserWarning, match="1-shot LDA collapse"):
        clf = LDAClassifier().fit(X, ["d", "c", "b", "a"])
    Q = rng.normal(size=(6, 8))
    np.testing.assert_allclose(clf.decision_function(Q), np.log(0.25), atol=1e-6)
    assert set(clf.predict(Q)) == {"a"}
    # with text weights, 1-shot GDA is the zero-shot classifier
    W = rng.normal(size=(4, 8))
    with pytest.warns(UserWarning):
        ens = LDAClassifier(text_weights=W).fit(X, ["d", "c", "b", "a"])
    zs = ZeroShotClassifier(text_weights=W).fit(X, ["d", "c", "b", "a"])
    np.testing.assert_array_equal(ens.predict(Q), zs.predict(Q))


def test_lda_two_shots_do_not_warn(problem):
    X, y, *_ = problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LDAClassifier().fit(X[:10], y[:10] // 2)


# ---------------------------------------------------------------- Tip-Adapter


def _reference_tip(X, y, Q, W, alpha, beta):
    """numpy transcription of gaopengcuhk/Tip-Adapter main.py run_tip_adapter."""
    cache_keys = _unit(X).T
    cache_values = np.eye(y.max() + 1)[y]
    feats = _unit(Q)
    affinity = feats @ cache_keys
    cache = np.exp((-1) * (beta - beta * affinity)) @ cache_values
    return 100.0 * feats @ _unit(W).T + cache * alpha


def test_tip_adapter_hand_case():
    # keys (1,0) -> a, (0,1) -> b; query (1,0), beta 1: A = (e^0, e^-1) = (1, 0.3679);
    # scores = 100 (1, 0) + 2 (1, 0.3679)
    clf = TipAdapterClassifier(alpha=2.0, beta=1.0, text_weights=np.eye(2)).fit(
        np.eye(2), ["a", "b"]
    )
    scores = clf._scores([[1.0, 0.0]])
    np.testing.assert_allclose(scores, [[102.0, 2 * np.exp(-1)]], rtol=1e-6)
    image_only = TipAdapterClassifier(beta=1.0).fit(np.eye(2), ["a", "b"])
    np.testing.assert_allclose(image_only._scores([[0.0, 3.0]]), [[np.exp(-1), 1.0]], rtol=1e-6)


def test_tip_adapter_matches_reference_and_alpha_zero_is_zero_shot(problem):
    X, y, Q, _, W = problem
    clf = TipAdapterClassifier(alpha=1.7, beta=3.0, text_weights=W).fit(X, y)
    np.testing.assert_allclose(
        clf._scores(Q), _reference_tip(X, y, Q, W, 1.7, 3.0), rtol=1e-5, atol=1e-4
    )
    zero = TipAdapterClassifier(alpha=0.0, text_weights=W).fit(X, y)
    zs = ZeroShotClassifier(text_weights=W).fit(X, y)
    np.testing.assert_allclose(zero._scores(Q), zs._scores(Q), rtol=1e-6, atol=1e-5)


def test_tip_adapter_is_invariant_to_support_order_and_chunk_size(problem):
    X, y, Q, _, W = problem
    perm = np.random.default_rng(3).permutation(len(X))
    base = TipAdapterClassifier(text_weights=W).fit(X, y)._scores(Q)
    shuffled = TipAdapterClassifier(text_weights=W, batch_size=7).fit(X[perm], y[perm])._scores(Q)
    np.testing.assert_allclose(shuffled, base, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------- Tip-X


def _reference_tipx(X, y, Q, W, alpha, beta, gamma, temp=0.5):
    """numpy transcription of vishaal27/SuS-X tipx.py (without its partial-batch and
    fp16 bugs: every query gets its KL, and the test affinities rescale the test KL)."""
    train = _unit(X)
    feats = _unit(Q)
    Wt = _unit(W).T
    train_dist = _softmax(train @ Wt / temp)
    test_dist = _softmax(feats @ Wt / temp)
    kl = np.zeros((len(feats), len(train)))
    for i in range(len(feats)):  # the reference's repeat_interleave, one query at a time
        p = np.repeat(test_dist[i : i + 1], len(train), axis=0)
        kl[i] = (p * (np.log(p) - np.log(train_dist))).sum(axis=-1)
    targets = np.eye(y.max() + 1)[y]
    new_knowledge = feats @ train.T
    cache_logits = np.exp((-1) * (beta - beta * new_knowledge)) @ targets
    clip_logits = 100.0 * feats @ Wt
    scaled = (kl - kl.min()) / (kl.max() - kl.min())  # scale_(kl, new_knowledge)
    scaled = scaled * (new_knowledge.max() - new_knowledge.min()) + new_knowledge.min()
    kl_logits = (-scaled) @ targets
    return clip_logits + kl_logits * gamma + cache_logits * alpha


def test_tipx_matches_reference_in_batch_mode_at_any_chunk_size(problem):
    X, y, Q, _, W = problem
    expected = _reference_tipx(X, y, Q, W, alpha=1.3, beta=4.0, gamma=2.5)
    for batch_size in (1, 7, 512):
        clf = TipXClassifier(alpha=1.3, beta=4.0, gamma=2.5, text_weights=W, batch_size=batch_size)
        np.testing.assert_allclose(clf.fit(X, y)._scores(Q), expected, rtol=1e-4, atol=1e-3)


def test_tipx_fit_rescale_uses_support_ranges_and_is_subset_invariant(problem):
    X, y, Q, _, W = problem
    clf = TipXClassifier(rescale="fit", text_weights=W).fit(X, y)
    F = _unit(X)
    S = _softmax(F @ _unit(W).T / 0.5)
    kl_ff = (S[:, None, :] * (np.log(S[:, None, :]) - np.log(S[None, :, :]))).sum(-1)
    np.testing.assert_allclose(clf.kl_range_, (kl_ff.min(), kl_ff.max()), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(clf.affinity_range_, ((F @ F.T).min(), 1.0), rtol=1e-5)
    np.testing.assert_allclose(clf._scores(Q[:3]), clf._scores(Q)[:3], rtol=1e-6)
    # the batch rescale does depend on the other queries
    batch = TipXClassifier(text_weights=W).fit(X, y)
    assert not np.allclose(batch._scores(Q[:3]), batch._scores(Q)[:3])


def test_tipx_gamma_zero_is_tip_adapter_and_support_order_does_not_matter(problem):
    X, y, Q, _, W = problem
    tip = TipAdapterClassifier(alpha=0.7, beta=2.0, text_weights=W).fit(X, y)._scores(Q)
    tipx = TipXClassifier(alpha=0.7, beta=2.0, gamma=0.0, text_weights=W).fit(X, y)._scores(Q)
    np.testing.assert_allclose(tipx, tip, rtol=1e-5, atol=1e-4)
    perm = np.random.default_rng(5).permutation(len(X))
    a = TipXClassifier(text_weights=W).fit(X, y)._scores(Q)
    b = TipXClassifier(text_weights=W).fit(X[perm], y[perm])._scores(Q)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_tipx_constant_kl_maps_to_the_minimum_affinity():
    # identical text rows -> uniform signatures -> KL = 0 everywhere; the reference
    # divides 0 by 0. Here K̃ = min A, so the KL term is −min A · (class counts).
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    clf = TipXClassifier(alpha=0.0, gamma=1.0, text_weights=np.ones((2, 2))).fit(X, [0, 1, 1])
    scores = clf._scores([[1.0, 0.0]])  # A = (1, 0, 0): min A = 0
    np.testing.assert_allclose(scores, 100 * np.full((1, 2), np.sqrt(0.5)), rtol=1e-6)


def test_tipx_requires_text():
    with pytest.raises(ValueError, match="needs class-name text"):
        TipXClassifier().fit(np.eye(2), [0, 1])


# ---------------------------------------------------------------- APE


def _reference_ape(X, y, Q, W, alpha, beta, gamma, feat_num, w):
    """numpy transcription of yangyangyang127/APE main.py APE() and utils.cal_criterion."""
    C, shots = y.max() + 1, np.bincount(y)[0]
    order = np.argsort(y, kind="stable")
    cache_keys = _unit(X)[order]
    cache_values = np.eye(C)[y[order]]
    clip_weights = _unit(W).T  # (d, C)
    feat_dim = clip_weights.shape[0]
    feats = np.concatenate(
        [clip_weights.T[:, None, :], cache_keys.reshape(C, shots, feat_dim)], axis=1
    )
    sim_sum, count = np.zeros(feat_dim), 0
    for i in range(C):
        for j in range(C):
            for m in range(feats.shape[1]):
                for n in range(feats.shape[1]):
                    if i != j:
                        sim_sum += feats[i, m] * feats[j, n]
                        count += 1
    criterion = -w[0] * sim_sum / count + w[1] * clip_weights.var(axis=1, ddof=1)
    indices = np.argsort(-criterion, kind="stable")[:feat_num]
    new_clip_weights = clip_weights[indices]
    new_clip_weights = new_clip_weights / np.linalg.norm(new_clip_weights, axis=0, keepdims=True)
    new_cache_keys = _unit(cache_keys[:, indices])
    test_features = _unit(Q)
    new_test_features = _unit(test_features[:, indices])
    R_fW = 100.0 * test_features @ clip_weights
    R_fF = new_test_features @ new_cache_keys.T
    key_logits = _softmax(new_cache_keys @ new_clip_weights, axis=1)
    cache_div = np.sum(cache_values * np.log2((cache_values + 1e-6) / (key_logits + 1e-6)), axis=1)[
        :, None
    ]
    soft_cache_values = cache_values * np.exp(cache_div * gamma)
    cache_logits = np.exp((-1) * (beta - beta * R_fF)) @ soft_cache_values
    return R_fW + cache_logits * alpha


def test_ape_matches_reference(problem):
    X, y, Q, _, W = problem
    expected = _reference_ape(X, y, Q, W, alpha=2.0, beta=1.5, gamma=0.4, feat_num=9, w=(0.6, 0.4))
    clf = APEClassifier(
        alpha=2.0, beta=1.5, gamma=0.4, n_features_to_select=9, variance_weight=0.4, text_weights=W
    )
    np.testing.assert_allclose(clf.fit(X, y)._scores(Q), expected, rtol=1e-4, atol=1e-3)
    assert len(clf.selected_features_) == 9


def test_ape_without_refinement_on_all_features_is_tip_adapter(problem):
    X, y, Q, _, W = problem
    ape = APEClassifier(alpha=1.2, beta=3.0, gamma=0.0, n_features_to_select=500, text_weights=W)
    with pytest.warns(UserWarning, match="keeps all 16 channels"):
        ape.fit(X, y)  # 500 capped at 16
    np.testing.assert_array_equal(np.sort(ape.selected_features_), np.arange(16))
    np.testing.assert_allclose(ape.value_weights_, 1.0)
    tip = TipAdapterClassifier(alpha=1.2, beta=3.0, text_weights=W).fit(X, y)
    np.testing.assert_allclose(ape._scores(Q), tip._scores(Q), rtol=1e-5, atol=1e-4)


def test_ape_channel_share_is_relative_to_the_width(problem):
    X, y, _, _, W = problem
    # 0.5 of 16 = 8 channels; 0.39 of 16 = 6.24 -> 6; an int is a count.
    assert len(APEClassifier(text_weights=W).fit(X, y).selected_features_) == 8
    assert (
        len(APEClassifier(n_features_to_select=0.39, text_weights=W).fit(X, y).selected_features_)
        == 6
    )
    assert (
        len(APEClassifier(n_features_to_select=5, text_weights=W).fit(X, y).selected_features_) == 5
    )
    with pytest.warns(UserWarning, match="no feature selection"):
        APEClassifier(n_features_to_select=1.0, text_weights=W).fit(X, y)


def test_ape_value_weight_hand_case():
    # d = 2, both features kept: key (1,0) of class 0 with text eye(2) gives
    # R = softmax(1, 0) = (0.731059, 0.268941); D = log2(1.000001/0.731060)
    # = 0.313261/0.693147 = 0.451940 bits; gamma = 1 -> weight e^0.451940 = 1.571359.
    clf = APEClassifier(gamma=1.0, n_features_to_select=2, text_weights=np.eye(2))
    with pytest.warns(UserWarning, match="keeps all 2 channels"):
        clf.fit(np.eye(2), [0, 1])
    np.testing.assert_allclose(clf.value_weights_, [1.571359, 1.571359], rtol=1e-5)


def test_ape_rejects_a_single_class():
    with pytest.raises(ValueError, match="at least 2 classes"):
        APEClassifier(text_weights=np.ones((1, 3))).fit(np.eye(3), [0, 0, 0])


# ---------------------------------------------------------------- shared behaviour


ALL = [
    NearestPrototype(),
    ZeroShotClassifier(text_weights=lambda c, d: np.eye(len(c), d)),
    LDAClassifier(),
    LDAClassifier(text_weights=lambda c, d: np.eye(len(c), d)),
    TipAdapterClassifier(),
    TipXClassifier(text_weights=lambda c, d: np.eye(len(c), d)),
    APEClassifier(text_weights=lambda c, d: np.eye(len(c), d)),
]


@pytest.mark.parametrize("clf", ALL, ids=lambda c: type(c).__name__)
def test_string_and_integer_labels_give_the_same_decisions(clf, problem):
    X, y, Q, _, _ = problem
    names = np.array(["ant", "bee", "cat", "dog", "eel"])
    ints = clone(clf).fit(X, y)
    strs = clone(clf).fit(X, names[y])
    np.testing.assert_array_equal(names[ints.predict(Q)], strs.predict(Q))
    proba = strs.predict_proba(Q)
    assert proba.dtype == np.float64 and proba.shape == (30, 5)
    assert strs.decision_function(Q).dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(names[proba.argmax(axis=1)], strs.predict(Q))


def test_grid_search_on_embeddings_runs_no_model():
    from skvlm.model_selection import FewShotSplit
    from skvlm.models import cached_models, clear_model_cache

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 12))
    y = np.repeat(np.arange(4), 10)
    X = centers[y] + rng.normal(size=(40, 12))
    clear_model_cache()
    search = GridSearchCV(
        TipXClassifier(text_weights=centers),
        {"alpha": [0.5, 2.0], "beta": [1.0, 5.5], "gamma": [0.0, 1.0]},
        cv=FewShotSplit(n_shots=4, n_splits=2, random_state=0),
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 8
    assert search.best_score_ > 0.5  # well-separated classes: far above chance (0.25)
    assert cached_models() == []


def test_grid_search_over_a_pipeline_encodes_each_image_and_prompt_once(
    tiny_images, count_forward, tmp_path
):
    from skvlm import CLIPEncoder
    from skvlm._embedding_cache import clear_memory_cache
    from skvlm.model_selection import FewShotSplit
    from skvlm.models import load_model

    tiny = dict(model="skvlm-tiny", pretrained=None, device="cpu", cache=tmp_path)
    images, labels = tiny_images
    clear_memory_cache()
    counts = count_forward(load_model("skvlm-tiny", None, "cpu"))
    pipe = Pipeline(
        [
            ("enc", CLIPEncoder(**tiny)),
            ("clf", TipAdapterClassifier(encoder=CLIPEncoder(**tiny), templates="simple")),
        ]
    )
    search = GridSearchCV(
        pipe,
        {"clf__alpha": [0.0, 1.0], "clf__beta": [1.0, 5.5]},
        cv=FewShotSplit(n_shots=2, n_splits=2, random_state=0),
    ).fit(images, labels)
    assert len(search.cv_results_["params"]) == 4
    assert counts["image"] == len(images)  # 9 fits, every image through the tower once
    assert counts["text"] == 3 * 7  # 3 class names x 7 "simple" templates, once
    text = search.best_estimator_["clf"].text_weights_
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)


def test_pickled_classifier_with_encoder_is_small_and_predicts_the_same(problem):
    from skvlm import CLIPEncoder

    X, y, Q, _, _ = problem
    encoder = CLIPEncoder(model="skvlm-tiny", pretrained=None, device="cpu")
    W = encoder.encode_text(["a", "b", "c", "d", "e"])
    # a 64-d model: project the problem to 64-d so that the widths match
    P = np.random.default_rng(0).normal(size=(16, 64))
    clf = LDAClassifier(encoder=encoder, class_names=["a", "b", "c", "d", "e"], templates=None).fit(
        X @ P, y
    )
    np.testing.assert_allclose(clf.text_weights_, W, atol=1e-5)
    blob = pickle.dumps(clf)
    assert len(blob) < 200_000
    np.testing.assert_array_equal(pickle.loads(blob).predict(Q @ P), clf.predict(Q @ P))


def test_imagenet_class_names_select_rows_by_name_and_integer_labels_index_them():
    from skvlm._text import resolve_class_names

    names = resolve_class_names("imagenet")
    W = np.random.default_rng(0).normal(size=(1000, 8))
    X = np.eye(8)[:3]
    labels = [names[7], names[3], names[999]]
    by_name = ZeroShotClassifier(class_names="imagenet", text_weights=W).fit(X, labels)
    expected_rows = [names.index(label) for label in sorted(labels)]
    np.testing.assert_allclose(by_name.text_weights_, _unit(W[expected_rows]), atol=1e-6)
    by_index = ZeroShotClassifier(class_names=np.array(names), text_weights=W).fit(X, [999, 3, 7])
    np.testing.assert_allclose(by_index.text_weights_, _unit(W[[3, 7, 999]]), atol=1e-6)


def test_tipx_fitted_in_batch_mode_refuses_fit_rescale_until_refit(problem):
    X, y, Q, _, W = problem
    clf = TipXClassifier(text_weights=W).fit(X, y)
    assert clf.kl_range_ is None
    with pytest.raises(ValueError, match="refit it after"):
        clf.set_params(rescale="fit").predict(Q)
    assert clf.fit(X, y).kl_range_ is not None


# --------------------------------------------------------------------------- the search's own fit


def _probe_problem(seed=0, n_classes=4, shots=6, n_val=40, d=12):
    rng = np.random.default_rng(seed)
    centres = 1.5 * rng.normal(size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), shots)
    y_val = rng.integers(0, n_classes, n_val)
    X = centres[y] + rng.normal(size=(len(y), d))
    X_val = centres[y_val] + rng.normal(size=(n_val, d))
    return X, y, X_val, y_val


def test_linear_probe_c_path_counts_equal_cold_fits_and_the_best_fit_is_handed_out():
    from skvlm.classifiers import LinearProbeClassifier, select_params
    from skvlm.classifiers._search import select_and_fit

    X, y, X_val, y_val = _probe_problem()
    Cs = [100.0, 0.01, 1.0, 0.1, 10.0]  # out of order: the path sorts, the table does not
    best, table = select_params(LinearProbeClassifier(), X, y, X_val, y_val, {"C": Cs})
    cold = [LinearProbeClassifier(C=c).fit(X, y) for c in Cs]
    np.testing.assert_allclose(
        table["accuracy"], [np.mean(m.predict(X_val) == y_val) for m in cold]
    )
    assert table["param_C"] == Cs
    chosen, fitted = select_and_fit(LinearProbeClassifier(), X, y, X_val, y_val, {"C": Cs})
    assert chosen == best and fitted.C == best["C"]
    reference = LinearProbeClassifier(C=best["C"]).fit(X, y)
    np.testing.assert_array_equal(fitted.predict(X_val), reference.predict(X_val))
    # warm-started: the same optimum up to L-BFGS's tolerance, not bit for bit
    gap = np.linalg.norm(fitted.coef_ - reference.coef_) / np.linalg.norm(reference.coef_)
    assert gap < 0.02
    assert fitted.n_features_in_ == X.shape[1] and list(fitted.classes_) == [0, 1, 2, 3]


def test_select_and_fit_in_a_pipeline_and_for_any_estimator():
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    from skvlm.classifiers import LinearProbeClassifier, select_params
    from skvlm.classifiers._search import select_and_fit

    X, y, X_val, y_val = _probe_problem(seed=1)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LinearProbeClassifier())])
    grid = {"clf__C": [0.01, 1.0, 100.0]}
    chosen, fitted = select_and_fit(pipe, X, y, X_val, y_val, grid)
    assert chosen == select_params(pipe, X, y, X_val, y_val, grid)[0]
    assert [name for name, _ in fitted.steps] == ["scale", "clf"]
    assert fitted[-1].C == chosen["clf__C"] and pipe[-1].C == 1.0  # the template is untouched
    refit = clone(pipe).set_params(**chosen).fit(X, y)
    np.testing.assert_array_equal(fitted.predict(X_val), refit.predict(X_val))
    # any other estimator: the search's fit of the chosen combination, not a refit
    knn = {"n_neighbors": [1, 5, 9]}
    chosen, fitted = select_and_fit(KNeighborsClassifier(), X, y, X_val, y_val, knn)
    accuracy = select_params(KNeighborsClassifier(), X, y, X_val, y_val, knn)[1]["accuracy"]
    assert chosen == {"n_neighbors": knn["n_neighbors"][int(np.argmax(accuracy))]}
    assert fitted.n_neighbors == chosen["n_neighbors"] and hasattr(fitted, "classes_")
