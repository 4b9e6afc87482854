import numpy as np
import pytest

from skvlm._math import numerical_rank
from skvlm._sklearn import InvalidParameterError
from skvlm.diagnostics import (
    alignment_score,
    modality_gap,
    recover_intra_similarity,
    similarity_distributions,
)


def _unit_rows(rng, n, d):
    X = rng.normal(size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# ---------------------------------------------------------------- modality_gap


def test_modality_gap_hand_case():
    # image centroid (1, 0), text centroid (0, 0.5) -> distance sqrt(1 + 0.25)
    images = np.array([[1.0, 0.0], [1.0, 0.0]])
    texts = np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert modality_gap(images, texts) == pytest.approx(np.sqrt(1.25))


def test_modality_gap_normalizes_rows_unless_told_not_to():
    images = np.array([[3.0, 0.0]])
    texts = np.array([[0.0, 4.0]])
    assert modality_gap(images, texts) == pytest.approx(np.sqrt(2.0))
    assert modality_gap(images, texts, normalize=False) == pytest.approx(5.0)


def test_modality_gap_is_zero_for_same_set_and_symmetric():
    rng = np.random.default_rng(0)
    X, Y = _unit_rows(rng, 20, 5), _unit_rows(rng, 7, 5)
    assert modality_gap(X, X) == pytest.approx(0.0, abs=1e-12)
    assert modality_gap(X, Y) == pytest.approx(modality_gap(Y, X))


def test_modality_gap_rejects_width_mismatch_and_nan():
    with pytest.raises(ValueError, match="3 columns.*4"):
        modality_gap(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="image_emb"):
        modality_gap(np.array([[np.nan, 1.0]]), np.ones((1, 2)))


# ---------------------------------------------------------------- alignment_score


def test_alignment_score_hand_case():
    images = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    texts = np.array([[2.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    # cosines 1, 0, -1 -> mean 0
    assert alignment_score(images, texts) == pytest.approx(0.0)
    assert alignment_score(images[:2], texts[:2]) == pytest.approx(0.5)


def test_alignment_score_pairs_rows_in_order():
    rng = np.random.default_rng(1)
    X = _unit_rows(rng, 10, 4)
    assert alignment_score(X, X) == pytest.approx(1.0)
    assert alignment_score(X, X[::-1]) < 1.0


def test_alignment_score_needs_matched_rows():
    with pytest.raises(ValueError, match="3 rows.*2"):
        alignment_score(np.ones((3, 2)), np.ones((2, 2)))


# ---------------------------------------------------------------- similarity_distributions


def test_similarity_distributions_by_class_hand_case():
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = np.array(["a", "a", "b", "b"])
    d = similarity_distributions(emb, labels)
    assert set(d) == {"intra_class", "inter_class"}
    # same-class pairs: (0,1) cos 1, (2,3) cos 1/sqrt2
    np.testing.assert_allclose(np.sort(d["intra_class"]), [1 / np.sqrt(2), 1.0], rtol=1e-6)
    # cross pairs: (0,2)=0, (0,3)=1/sqrt2, (1,2)=0, (1,3)=1/sqrt2
    np.testing.assert_allclose(
        np.sort(d["inter_class"]), [0, 0, 1 / np.sqrt(2), 1 / np.sqrt(2)], atol=1e-6
    )
    assert d["intra_class"].dtype == np.float32


def test_similarity_distributions_by_modality_counts_and_values():
    rng = np.random.default_rng(2)
    images, texts = _unit_rows(rng, 6, 3), _unit_rows(rng, 4, 3)
    labels_i = np.array([0, 0, 1, 1, 2, 2])
    labels_t = np.array([0, 1, 2, 2])
    d = similarity_distributions(images, labels_i, texts, labels_t)
    assert d["intra_modal"].size == 6 * 5 // 2
    assert d["intra_class"].size + d["inter_class"].size == d["intra_modal"].size
    assert d["inter_modal"].size == 6 * 4
    np.testing.assert_allclose(
        np.sort(d["inter_modal"]), np.sort((images @ texts.T).ravel()), rtol=1e-5
    )
    # same-class image-text pairs: 2 images x 1 text for class 0 and 1, 2 x 2 for class 2
    assert d["inter_modal_intra_class"].size == 2 + 2 + 4
    assert d["inter_modal_inter_class"].size == 24 - 8


def test_similarity_distributions_max_pairs_is_seeded_subset():
    rng = np.random.default_rng(3)
    emb = _unit_rows(rng, 30, 4)
    labels = np.arange(30) % 3
    full = similarity_distributions(emb, labels)
    a = similarity_distributions(emb, labels, max_pairs=10, random_state=0)
    b = similarity_distributions(emb, labels, max_pairs=10, random_state=0)
    assert a["inter_class"].size == 10
    np.testing.assert_array_equal(a["inter_class"], b["inter_class"])
    assert np.isin(a["inter_class"], full["inter_class"]).all()


def test_similarity_distributions_errors():
    emb = np.eye(3)
    with pytest.raises(ValueError, match="labels_a"):
        similarity_distributions(emb, [0, 1])
    with pytest.raises(ValueError, match="labels_b was given without emb_b"):
        similarity_distributions(emb, [0, 1, 2], labels_b=[0])
    with pytest.raises(InvalidParameterError, match="'max_pairs' parameter"):
        similarity_distributions(emb, [0, 1, 2], max_pairs=0)
    with pytest.raises(InvalidParameterError, match="'random_state' parameter"):
        similarity_distributions(emb, [0, 1, 2], random_state="seed")
    with pytest.raises(ValueError, match="at least 2 rows in emb_a, got 1"):
        similarity_distributions(emb[:1], [0])


# ---------------------------------------------------------------- parameter validation


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: modality_gap(np.eye(2), np.eye(2), normalize="yes"),
            "The 'normalize' parameter of modality_gap must be an instance of 'bool'",
        ),
        (
            lambda: modality_gap(np.eye(2), 3.0),
            "The 'text_emb' parameter of modality_gap must be an array-like",
        ),
        (
            lambda: alignment_score("images", np.eye(2)),
            "The 'image_emb' parameter of alignment_score must be an array-like",
        ),
        (
            lambda: similarity_distributions(np.eye(3), [0, 1, 2], max_pairs=2.5),
            "The 'max_pairs' parameter of similarity_distributions must be an int",
        ),
        (
            lambda: recover_intra_similarity(None),
            "The 'S_inter' parameter of recover_intra_similarity must be an array-like",
        ),
    ],
)
def test_bad_arguments_raise_sklearns_invalid_parameter_error(call, message):
    with pytest.raises(InvalidParameterError, match=message):
        call()


def test_options_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        modality_gap(np.eye(2), np.eye(2), False)
    with pytest.raises(TypeError, match="positional"):
        recover_intra_similarity(np.eye(3), 2)


def test_random_state_accepts_a_generator():
    emb = _unit_rows(np.random.default_rng(1), 12, 3)
    a = similarity_distributions(
        emb, np.arange(12) % 2, max_pairs=5, random_state=np.random.default_rng(4)
    )
    b = similarity_distributions(emb, np.arange(12) % 2, max_pairs=5, random_state=4)
    np.testing.assert_array_equal(a["inter_class"], b["inter_class"])


def test_numerical_rank_uses_matrix_ranks_tolerance():
    # singular values (1, 1e-10, 1e-17): tol = 1 * 3 * eps(float64) ~ 6.7e-16 -> rank 2;
    # at float32 precision (eps ~ 1.2e-7) 1e-10 is noise -> rank 1.
    s = np.array([1.0, 1e-10, 1e-17])
    assert numerical_rank(s, (3, 3)) == 2
    assert numerical_rank(s, (3, 3), np.float32) == 1
    assert numerical_rank(s, (3, 3), np.int64) == 2  # non-float input: float64 eps
    assert numerical_rank(np.zeros(3), (3, 3)) == 0
    assert numerical_rank(np.array([]), (0, 3)) == 0
    M = np.diag(s)
    assert numerical_rank(np.linalg.svd(M, compute_uv=False), M.shape) == np.linalg.matrix_rank(M)


# ---------------------------------------------------------------- recover_intra_similarity


@pytest.mark.parametrize("d, n", [(4, 50), (8, 300), (16, 600)])
def test_recover_intra_similarity_recovers_image_gram_matrix(d, n):
    rng = np.random.default_rng(d)
    X_I, X_T = _unit_rows(rng, n, d), _unit_rows(rng, n, d)
    S_intra = recover_intra_similarity(X_T @ X_I.T)
    assert S_intra.dtype == np.float64 and S_intra.shape == (n, n)
    np.testing.assert_allclose(S_intra, X_I @ X_I.T, atol=1e-6)


def test_recover_intra_similarity_from_unequal_counts_and_transposed():
    rng = np.random.default_rng(5)
    d = 6
    X_I, X_T = _unit_rows(rng, 80, d), _unit_rows(rng, 25, d)
    S = X_T @ X_I.T
    np.testing.assert_allclose(recover_intra_similarity(S), X_I @ X_I.T, atol=1e-6)
    # the same system recovers the text-text similarities from the transpose
    X_T2 = _unit_rows(rng, 60, d)
    np.testing.assert_allclose(recover_intra_similarity(X_I @ X_T2.T), X_T2 @ X_T2.T, atol=1e-6)


def test_recover_intra_similarity_from_float32_input_infers_rank():
    rng = np.random.default_rng(6)
    d = 8
    X_I, X_T = _unit_rows(rng, 200, d), _unit_rows(rng, 200, d)
    S32 = (X_T @ X_I.T).astype(np.float32)
    S_intra = recover_intra_similarity(S32)
    assert S_intra.dtype == np.float64
    np.testing.assert_allclose(S_intra, X_I @ X_I.T, atol=1e-4)


def test_recover_intra_similarity_explicit_rank_matches_inferred():
    rng = np.random.default_rng(7)
    X_I, X_T = _unit_rows(rng, 60, 5), _unit_rows(rng, 60, 5)
    S = X_T @ X_I.T
    np.testing.assert_allclose(
        recover_intra_similarity(S, rank=5), recover_intra_similarity(S), atol=1e-10
    )


def test_recover_intra_similarity_too_few_images_is_clear_error():
    rng = np.random.default_rng(8)
    d = 8  # 36 unknowns
    X_I, X_T = _unit_rows(rng, 30, d), _unit_rows(rng, 100, d)
    with pytest.raises(ValueError, match=r"d\(d\+1\)/2 = 36.*30 image"):
        recover_intra_similarity(X_T @ X_I.T)


def test_recover_intra_similarity_rejects_bad_rank_and_degenerate_input():
    S = np.ones((10, 10))
    with pytest.raises(InvalidParameterError, match="'rank' parameter of recover_intra_similarity"):
        recover_intra_similarity(S, rank=0)
    with pytest.raises(InvalidParameterError, match="'rank' parameter"):
        recover_intra_similarity(S, rank=2.0)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[1, 10\]"):
        recover_intra_similarity(S, rank=11)
    with pytest.raises(ValueError, match="rank must be an integer"):
        recover_intra_similarity(S, rank=True)
    with pytest.raises(ValueError, match="rank.*0"):
        recover_intra_similarity(np.zeros((5, 5)))


def test_recover_intra_similarity_repeated_images_do_not_determine_q():
    rng = np.random.default_rng(9)
    d = 3  # 6 unknowns, but only 3 distinct images -> 3 independent equations
    distinct = _unit_rows(rng, 3, d)
    X_I = np.repeat(distinct, 10, axis=0)
    X_T = _unit_rows(rng, 20, d)
    with pytest.raises(ValueError, match="not determine Q uniquely"):
        recover_intra_similarity(X_T @ X_I.T, rank=3)


def test_recover_intra_similarity_in_a_narrow_cone_like_clip():
    # CLIP-like geometry: each modality in its own narrow cone (rows share a large
    # common direction), which makes the system on Q much worse conditioned.
    rng = np.random.default_rng(10)
    d, n = 12, 200
    shift_i, shift_t = np.zeros(d), np.zeros(d)
    shift_i[0], shift_t[1] = 5.0, 5.0
    X_I = rng.normal(size=(n, d)) + shift_i
    X_T = rng.normal(size=(n, d)) + shift_t
    X_I /= np.linalg.norm(X_I, axis=1, keepdims=True)
    X_T /= np.linalg.norm(X_T, axis=1, keepdims=True)
    assert (X_I @ X_I.T).mean() > 0.6  # really a cone
    np.testing.assert_allclose(recover_intra_similarity(X_T @ X_I.T), X_I @ X_I.T, atol=1e-6)
