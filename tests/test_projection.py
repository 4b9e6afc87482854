import numpy as np
import pytest

from skvlm import ClassSubspaceProjector, CLIPEncoder, ModalityMeanShift

TINY = dict(model="skvlm-tiny", pretrained=None, device="cpu")


def test_raw_svd_projection_on_axis_aligned_text():
    # Three class rows spanning axes 0-2 with most variance on axis 0, then 1.
    text = np.array([[3.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 1.0, 0]])
    proj = ClassSubspaceProjector(text_embeddings=text, n_components=2, center=False)
    X = np.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(proj.fit_transform(X), [[1.0, 2.0, 0.0, 0.0]])
    np.testing.assert_allclose(np.abs(proj.components_), [[1, 0, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_allclose(proj.explained_variance_ratio_, [9 / 14, 4 / 14])
    coords = proj.set_params(reproject=False).fit_transform(X)
    np.testing.assert_allclose(np.abs(coords), [[1.0, 2.0]])


def test_centering_changes_the_directions():
    # Both rows share a large offset on axis 0; they differ only on axis 1.
    text = np.array([[5.0, 1.0, 0.0], [5.0, -1.0, 0.0]])
    centred = ClassSubspaceProjector(text_embeddings=text, n_components=1).fit(np.eye(3))
    raw = ClassSubspaceProjector(text_embeddings=text, n_components=1, center=False).fit(np.eye(3))
    np.testing.assert_allclose(np.abs(centred.components_), [[0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(np.abs(raw.components_), [[1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(centred.text_mean_, [5.0, 0.0, 0.0])


def test_projection_is_idempotent_and_orthogonal():
    rng = np.random.default_rng(0)
    text, X = rng.normal(size=(20, 8)), rng.normal(size=(5, 8))
    proj = ClassSubspaceProjector(text_embeddings=text).fit(X)
    assert proj.n_components_ == 4  # None: d // 2
    once = proj.transform(X)
    np.testing.assert_allclose(proj.transform(once), once, atol=1e-10)
    np.testing.assert_allclose((X - once) @ once.T, 0, atol=1e-10)


def test_default_components_are_capped_at_the_rank():
    text = np.random.default_rng(0).normal(size=(3, 10))
    proj = ClassSubspaceProjector(text_embeddings=text).fit(np.ones((2, 10)))
    assert proj.n_components_ == 2  # 3 centred rows have rank 2 < d // 2 = 5


def test_float_n_components_reaches_the_variance_fraction():
    text = np.diag([4.0, 2.0, 1.0, 0.5])
    proj = ClassSubspaceProjector(text_embeddings=text, center=False, n_components=0.9)
    proj.fit(np.eye(4))
    ratios = np.array([16, 4, 1, 0.25]) / 21.25
    assert proj.n_components_ == int(np.searchsorted(np.cumsum(ratios), 0.9) + 1) == 2


def test_float_n_components_tie_takes_one_more_as_sklearn_pca():
    from skvlm.projection import _n_components_from

    # variances (1, 1): cumulative ratios (0.5, 1.0). A fraction of exactly 0.5 is not
    # exceeded by one component, so sklearn's PCA (side="right") keeps 2.
    assert _n_components_from(0.5, np.array([1.0, 1.0]), 2) == 2
    assert _n_components_from(0.49, np.array([1.0, 1.0]), 2) == 1
    assert _n_components_from(0.5, np.array([2.0, 1.0, 1.0]), 3) == 1  # 0.667 > 0.5


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.75, 0.9, 0.99])
def test_float_n_components_equals_sklearn_pca_on_the_centred_rows(fraction):
    from sklearn.decomposition import PCA

    text = np.random.default_rng(3).normal(size=(12, 8)) * np.arange(1, 9)
    ours = ClassSubspaceProjector(text_embeddings=text, n_components=fraction).fit(np.ones((1, 8)))
    assert ours.n_components_ == PCA(n_components=fraction).fit(text).n_components_


def test_feature_names_follow_the_input_when_reprojected():
    import pandas as pd

    X = pd.DataFrame(np.eye(3), columns=["a", "b", "c"])
    proj = ClassSubspaceProjector(text_embeddings=np.eye(3)[:2], n_components=1, center=False).fit(
        X
    )
    assert proj.get_feature_names_out().tolist() == ["a", "b", "c"]
    coords = ClassSubspaceProjector(
        text_embeddings=np.eye(3)[:2], n_components=1, reproject=False
    ).fit(X)
    assert coords.get_feature_names_out().tolist() == ["classsubspaceprojector0"]
    shift = ModalityMeanShift(
        ClassSubspaceProjector(text_embeddings=np.eye(3)[:2], center=False)
    ).fit(X)
    assert shift.get_feature_names_out().tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        shift.get_feature_names_out(["x", "y", "z"])


def test_normalize_gives_unit_rows():
    text = np.random.default_rng(1).normal(size=(6, 4))
    out = ClassSubspaceProjector(text_embeddings=text, normalize=True).fit_transform(
        np.random.default_rng(2).normal(size=(3, 4))
    )
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0)


@pytest.mark.parametrize(
    "kwargs, X, message",
    [
        ({"text_embeddings": np.ones((3, 5))}, np.ones((2, 4)), "width 5 but X has 4"),
        ({"text_embeddings": np.full((3, 4), np.nan)}, np.ones((2, 4)), "NaN"),
        ({"text_embeddings": np.eye(4), "n_components": 9}, np.ones((2, 4)), "n_components=9"),
        ({"text_embeddings": np.eye(4)}, np.full((2, 4), np.inf), "infinity"),
        ({"class_names": "labels", "encoder": CLIPEncoder(**TINY)}, np.ones((2, 64)), "needs y"),
    ],
)
def test_bad_input(kwargs, X, message):
    with pytest.raises(ValueError, match=message):
        ClassSubspaceProjector(**kwargs).fit(X)


def test_wrong_width_after_fit():
    proj = ClassSubspaceProjector(text_embeddings=np.eye(4)).fit(np.ones((2, 4)))
    with pytest.raises(ValueError, match="4 features"):
        proj.transform(np.ones((2, 3)))


def test_class_names_from_the_encoder_equal_the_template_average():
    encoder = CLIPEncoder(**TINY)
    proj = ClassSubspaceProjector(
        class_names=["photo", "picture", "image"],
        templates=["a {}", "the {}"],
        encoder=encoder,
        n_components=2,
    )
    proj.fit(np.ones((1, 64)))
    rows = []
    for name in ["photo", "picture", "image"]:
        both = encoder.encode_text([f"a {name}", f"the {name}"]).mean(axis=0)
        rows.append(both / np.linalg.norm(both))
    manual = ClassSubspaceProjector(text_embeddings=np.array(rows), n_components=2)
    manual.fit(np.ones((1, 64)))
    np.testing.assert_allclose(np.abs(proj.components_), np.abs(manual.components_), atol=1e-5)
    assert proj.class_names_ == ["photo", "picture", "image"]


def test_labels_as_class_names_and_imagenet_default():
    encoder = CLIPEncoder(**TINY)
    X = np.random.default_rng(0).normal(size=(4, 64))
    by_labels = ClassSubspaceProjector(class_names="labels", encoder=encoder, templates=None)
    by_labels.fit(X, ["photo", "image", "photo", "picture"])
    assert by_labels.class_names_ == ["image", "photo", "picture"]
    imagenet = ClassSubspaceProjector(encoder=encoder, templates=None).fit(X)
    assert len(imagenet.class_names_) == 1000 and 1 <= imagenet.n_components_ <= 32


def test_mean_shift_adds_back_the_cut_mean():
    rng = np.random.default_rng(0)
    text, X = rng.normal(size=(10, 6)), rng.normal(size=(30, 6)) + 2.0
    proj = ClassSubspaceProjector(text_embeddings=text, n_components=2)
    shifted = ModalityMeanShift(proj).fit(X)
    projected = proj.fit(X).transform(X)
    out = shifted.transform(X)
    # Eq. 12: delta = (I - U^T U) mu, orthogonal to the kept subspace.
    U = proj.components_
    expected_shift = X.mean(axis=0) - U.T @ U @ X.mean(axis=0)
    np.testing.assert_allclose(out - projected, np.broadcast_to(expected_shift, out.shape))
    np.testing.assert_allclose(U @ expected_shift, 0, atol=1e-10)
    # A translation: Euclidean distances between projected rows are unchanged.
    np.testing.assert_allclose(
        np.linalg.norm(out[0] - out[1]), np.linalg.norm(projected[0] - projected[1])
    )
    # The shifted rows' mean equals the original mean.
    np.testing.assert_allclose(out.mean(axis=0), X.mean(axis=0), atol=1e-10)
