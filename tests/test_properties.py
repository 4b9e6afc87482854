"""Property-based robustness of the numeric estimators (issue 8).

Hypothesis draws embedding matrices with the shapes, dtypes and degeneracies real
embeddings can have: constant columns, all-zero rows, duplicated rows, a single
class, classes with one sample, negative values, and rows scaled from subnormal
to near the dtype's largest value. For every call the contract is: a finite
result of the right shape, or a ``ValueError`` that names the problem. Never an
exception from inside numpy, never a ``RuntimeWarning`` (overflow, invalid value:
the tests turn them into errors), never NaN in the output.

Correctness properties catch silent numeric failure, where a result is finite but
wrong: every skvlm classifier and the retrieval metrics depend on each row only
through its direction, so multiplying rows by powers of two (exact in floating
point) must leave every score bit-identical, however close to overflow or
underflow the scaled rows get.

Settings are deterministic (``derandomize=True``, no example database), so CI sees
the same examples on every run.
"""

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import clone
from sklearn.exceptions import UndefinedMetricWarning

from skvlm import ClassSubspaceProjector, ModalityMeanShift, Retriever
from skvlm._math import l2_normalize, log_softmax, softmax
from skvlm.classifiers import (
    APEClassifier,
    LDAClassifier,
    NearestPrototype,
    TipAdapterClassifier,
    TipXClassifier,
    ZeroShotClassifier,
)
from skvlm.diagnostics import (
    alignment_score,
    modality_gap,
    recover_intra_similarity,
    similarity_distributions,
)
from skvlm.retrieval import (
    average_precision_per_query,
    map_at_r,
    mean_average_precision,
    r_precision,
    recall_at_k,
)

SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FLOAT_DTYPES = [np.float16, np.float32, np.float64]
INT_DTYPES = [np.int32, np.int64, np.bool_]

# Row magnitudes per dtype: tiny (subnormal where the dtype has them), moderate, and
# huge but representable. float64 goes beyond float32's range both ways.
MAGNITUDES = {
    np.float16: [1e-7, 1e-3, 1.0, 1e3],
    np.float32: [1e-42, 1e-30, 1e-3, 1.0, 1e3, 1e30],
    np.float64: [1e-310, 1e-300, 1e-30, 1.0, 1e30, 1e300],
}


class Text:
    """Deterministic text weights for any classes and width (a stable repr for ids)."""

    def __call__(self, classes, n_features):
        rng = np.random.default_rng(7 * len(classes) + n_features)
        return rng.normal(size=(len(classes), n_features))

    def __repr__(self):
        return "Text()"


TEXT = Text()


def text_rows(n_features):
    return np.random.default_rng(n_features).normal(size=(6, n_features))


CLASSIFIERS = [
    NearestPrototype(),
    ZeroShotClassifier(text_weights=TEXT),
    LDAClassifier(),
    LDAClassifier(text_weights=TEXT),
    TipAdapterClassifier(),
    TipAdapterClassifier(text_weights=TEXT, batch_size=7),
    TipXClassifier(text_weights=TEXT, rescale="batch", batch_size=7),
    TipXClassifier(text_weights=TEXT, rescale="fit"),
    APEClassifier(text_weights=TEXT, n_features_to_select=3),
]
CLASSIFIER_IDS = [repr(c).replace(" ", "") for c in CLASSIFIERS]


# ------------------------------------------------------------------ strategies


@st.composite
def embeddings(
    draw, n_samples=None, n_features=None, dtypes=FLOAT_DTYPES + INT_DTYPES, moderate=False
):
    """An (n, d) matrix of one dtype with optional degeneracies.

    Rows are a base pattern (entries on a coarse grid, so duplicates and ties are
    common) times a per-row magnitude and sign; then some columns are made constant,
    some rows copied over others and some rows zeroed. ``moderate`` keeps the row
    magnitudes in [1e-3, 1e3], so that power-of-two rescaling stays exact.
    """
    n = draw(st.integers(1, 40)) if n_samples is None else n_samples
    d = draw(st.integers(1, 16)) if n_features is None else n_features
    dtype = draw(st.sampled_from(dtypes))
    base = draw(hnp.arrays(np.float64, (n, d), elements=st.integers(-8, 8).map(float)))
    if dtype in INT_DTYPES:
        X = base if dtype is not np.bool_ else base > 0
        big = np.iinfo(dtype).max // 16 if dtype is not np.bool_ else 1
        rows = draw(st.lists(st.sampled_from([1, 3, big]), min_size=n, max_size=n))
        X = (X * np.array(rows)[:, None]) if dtype is not np.bool_ else X
    else:
        magnitudes = [1e-3, 1.0, 1e3] if moderate else MAGNITUDES[dtype]
        rows = draw(st.lists(st.sampled_from(magnitudes), min_size=n, max_size=n))
        # base / 8 is at most 1, so the largest magnitude is the largest entry.
        X = base / 8 * np.array(rows)[:, None]
    X = X.astype(dtype)
    for col in draw(st.sets(st.integers(0, d - 1), max_size=d)):
        X[:, col] = X[0, col]
    row_index = st.integers(0, n - 1)
    for src, dst in draw(st.lists(st.tuples(row_index, row_index), max_size=4)):
        X[dst] = X[src]
    for row in draw(st.sets(st.integers(0, n - 1), max_size=3)):
        X[row] = 0
    return X


@st.composite
def labels(draw, n):
    n_classes = draw(st.integers(1, min(4, n)))
    y = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    if draw(st.booleans()):
        return np.array(["cat", "dog", "eel", "fox"])[y]
    return y


@st.composite
def problems(draw, dtypes=FLOAT_DTYPES + INT_DTYPES, moderate=False):
    """(X_train, y, X_query) sharing width and dtype."""
    X = draw(embeddings(dtypes=dtypes, moderate=moderate))
    y = draw(labels(X.shape[0]))
    Q = draw(embeddings(n_features=X.shape[1], dtypes=[X.dtype.type], moderate=moderate))
    return X, y, Q


def power_of_two_scales(n, dtype):
    """Per-row factors 2**k that keep moderate rows normal (neither inf nor subnormal)."""
    top = {np.float32: 90, np.float64: 1000}[dtype]
    factors = [2.0**-top, 2.0**-7, 1.0, 2.0**13, 2.0**top]
    return st.lists(st.sampled_from(factors), min_size=n, max_size=n)


# ------------------------------------------------------------------ helpers


@contextlib.contextmanager
def strict():
    """Warnings as errors for numpy's overflow/invalid-value RuntimeWarnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # LDA's documented 1-shot warning
        yield


def fit_or_expected_error(clf, X, y):
    """Fit, or check the one ValueError a valid finite input may raise."""
    if isinstance(clf, APEClassifier) and len(np.unique(y)) < 2:
        with pytest.raises(ValueError, match="at least 2 classes"):
            clf.fit(X, y)
        return None
    return clf.fit(X, y)


def check_classifier_outputs(clf, Q):
    n_classes = len(clf.classes_)
    pred = clf.predict(Q)
    assert pred.shape == (Q.shape[0],)
    assert np.isin(pred, clf.classes_).all()
    proba = clf.predict_proba(Q)
    assert proba.shape == (Q.shape[0], n_classes)
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    # predict and predict_proba come from the same scores: the predicted class has
    # the largest probability.
    column = np.searchsorted(clf.classes_, pred)
    np.testing.assert_array_equal(proba[np.arange(len(pred)), column], proba.max(axis=1))
    log_proba = clf.predict_log_proba(Q)
    assert np.isfinite(log_proba).all() and (log_proba <= 0).all()
    scores = clf.decision_function(Q)
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    assert scores.shape == ((Q.shape[0],) if n_classes == 2 else (Q.shape[0], n_classes))
    return scores


# ------------------------------------------------------------------ shared math


@settings(max_examples=60, **SETTINGS)
@given(X=embeddings(dtypes=FLOAT_DTYPES))
def test_l2_normalize_gives_unit_or_zero_rows(X):
    with strict():
        U = l2_normalize(X)
    assert U.dtype == X.dtype and U.shape == X.shape
    norms = np.linalg.norm(U.astype(np.float64), axis=1)
    zero = ~X.any(axis=1)
    assert (U[zero] == 0).all()
    tol = 10 * np.finfo(X.dtype).eps * np.sqrt(X.shape[1])
    np.testing.assert_allclose(norms[~zero], 1.0, rtol=0, atol=tol)
    # The direction is kept: no entry changes sign (an entry far below its row's
    # largest may round to 0 in float16).
    assert ((np.sign(U) == np.sign(X)) | (U == 0)).all()


@settings(max_examples=40, **SETTINGS)
@given(
    scores=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
        elements=st.floats(-1e300, 1e300, allow_nan=False),
    )
)
def test_softmax_is_a_distribution_for_any_finite_scores(scores):
    with strict():
        p, log_p = softmax(scores), log_softmax(scores)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert np.isfinite(log_p).all()


# ------------------------------------------------------------------ classifiers


@pytest.mark.parametrize("estimator", CLASSIFIERS, ids=CLASSIFIER_IDS)
@settings(max_examples=30, **SETTINGS)
@given(problem=problems())
def test_classifier_finite_or_clear_error(estimator, problem):
    X, y, Q = problem
    with strict():
        clf = fit_or_expected_error(clone(estimator), X, y)
        if clf is None:
            return
        check_classifier_outputs(clf, Q)


@pytest.mark.parametrize("estimator", CLASSIFIERS, ids=CLASSIFIER_IDS)
@settings(max_examples=25, **SETTINGS)
@given(data=st.data(), problem=problems(dtypes=[np.float32, np.float64], moderate=True))
def test_classifier_ignores_row_norms(estimator, data, problem):
    # Every classifier normalises the rows first, and multiplying by a power of two
    # is exact, so the scores must be bit-identical: any difference is a norm that
    # overflowed or underflowed.
    X, y, Q = problem
    dtype = X.dtype.type
    X_scale = np.array(data.draw(power_of_two_scales(len(X), dtype)), dtype=dtype)
    Q_scale = np.array(data.draw(power_of_two_scales(len(Q), dtype)), dtype=dtype)
    with strict():
        clf = fit_or_expected_error(clone(estimator), X, y)
        if clf is None:
            return
        expected = clf.decision_function(Q)
        scaled = clone(estimator).fit(X * X_scale[:, None], y)
        np.testing.assert_array_equal(scaled.decision_function(Q * Q_scale[:, None]), expected)


def _scores_close(a, b):
    """Equal up to the round-off of summing the same terms in another order."""
    scale = max(1.0, float(np.abs(a).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("estimator", CLASSIFIERS, ids=CLASSIFIER_IDS)
@settings(max_examples=25, **SETTINGS)
@given(data=st.data(), problem=problems(dtypes=[np.float32, np.float64]))
def test_classifier_ignores_training_row_order(estimator, data, problem):
    X, y, Q = problem
    order = np.array(data.draw(st.permutations(range(len(X)))))
    with strict():
        clf = fit_or_expected_error(clone(estimator), X, y)
        if clf is None:
            return
        permuted = clone(estimator).fit(X[order], y[order])
        _scores_close(permuted.decision_function(Q), clf.decision_function(Q))


@settings(max_examples=30, **SETTINGS)
@given(problem=problems(dtypes=[np.float32, np.float64]))
def test_nearest_prototype_duplicated_training_set_keeps_prototypes(problem):
    X, y, _ = problem
    with strict():
        once = NearestPrototype().fit(X, y).prototypes_
        twice = NearestPrototype().fit(np.concatenate([X, X]), np.concatenate([y, y])).prototypes_
    np.testing.assert_allclose(twice, once, rtol=0, atol=1e-6)


@settings(max_examples=30, **SETTINGS)
@given(problem=problems(dtypes=[np.float32, np.float64]))
def test_nearest_prototype_prototypes_are_unit_or_zero(problem):
    # A prototype is zero only when its class's unit rows cancel (or are all zero).
    X, y, _ = problem
    with strict():
        clf = NearestPrototype().fit(X, y)
    norms = np.linalg.norm(clf.prototypes_.astype(np.float64), axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    for c, prototype in zip(clf.classes_, clf.prototypes_):
        if not X[y == c].any():
            assert not prototype.any()


@st.composite
def one_direction_per_class(draw):
    """Each class's rows are one direction at several positive norms (x, 3x, 1e3 x)."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    d = draw(st.integers(2, 16))
    n_classes = draw(st.integers(1, 4))
    grid = st.integers(-8, 8).map(float)
    directions = draw(hnp.arrays(np.float64, (n_classes, d), elements=grid))
    directions[~directions.any(axis=1), 0] = 1.0
    y = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n_classes, max_size=30)))
    y[:n_classes] = np.arange(n_classes)  # every class present
    norm = st.sampled_from([0.1, 1.0, 3.0, 7.0, 1e3])
    norms = draw(st.lists(norm, min_size=len(y), max_size=len(y)))
    return (directions[y] * np.array(norms)[:, None]).astype(dtype), y


@settings(max_examples=40, **SETTINGS)
@given(data=st.data(), problem=one_direction_per_class())
def test_lda_rows_differing_only_in_norm_have_no_spread(data, problem):
    # Exactly, the class-centred unit rows are 0; the round-off of normalising x and
    # 3x must not be inverted into a precision of 1e30 (scores then flipped sign when
    # the rows were permuted).
    X, y = problem
    order = np.array(data.draw(st.permutations(range(len(X)))))
    Q = np.random.default_rng(0).normal(size=(5, X.shape[1])).astype(X.dtype)
    with strict(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        clf = LDAClassifier().fit(X, y)
        permuted = LDAClassifier().fit(X[order], y[order])
    assert any("no spread" in str(w.message) for w in caught)
    assert not clf.precision_.any()
    np.testing.assert_array_equal(permuted.decision_function(Q), clf.decision_function(Q))


@pytest.mark.parametrize("estimator", CLASSIFIERS[:4], ids=CLASSIFIER_IDS[:4])
@pytest.mark.parametrize("where", ["fit", "predict"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_classifier_rejects_nan_and_inf(estimator, where, bad):
    X = np.random.default_rng(0).normal(size=(6, 3))
    y = np.array([0, 0, 1, 1, 2, 2])
    X_bad = X.copy()
    X_bad[2, 1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        if where == "fit":
            clone(estimator).fit(X_bad, y)
        else:
            clone(estimator).fit(X, y).predict(X_bad)


# ------------------------------------------------------------------ projection


@settings(max_examples=40, **SETTINGS)
@given(
    X=embeddings(),
    text_scale=st.sampled_from([1e-300, 1e-30, 1.0, 1e30, 1e300]),
    center=st.booleans(),
    reproject=st.booleans(),
    normalize=st.booleans(),
)
def test_projector_finite_or_clear_error(X, text_scale, center, reproject, normalize):
    d = X.shape[1]
    text = text_rows(d) * text_scale
    projector = ClassSubspaceProjector(
        text_embeddings=text, center=center, reproject=reproject, normalize=normalize
    )
    with strict():
        out = projector.fit_transform(X)
    assert out.shape == (X.shape[0], d if reproject else projector.n_components_)
    assert np.isfinite(out).all()
    # The directions do not depend on the text's overall scale.
    reference = ClassSubspaceProjector(text_embeddings=text_rows(d), center=center).fit(X)
    np.testing.assert_allclose(
        np.abs(projector.components_), np.abs(reference.components_), atol=1e-5
    )


@settings(max_examples=40, **SETTINGS)
@given(data=st.data(), X=embeddings(dtypes=[np.float32, np.float64], moderate=True))
def test_projection_is_linear_in_each_row(data, X):
    # x -> x U^T U is linear, so a power-of-two factor per row comes out exactly.
    scales = np.array(data.draw(power_of_two_scales(len(X), X.dtype.type)), dtype=X.dtype)
    projector = ClassSubspaceProjector(text_embeddings=text_rows(X.shape[1])).fit(X)
    with strict():
        out = projector.transform(X)
        scaled = projector.transform(X * scales[:, None])
    np.testing.assert_array_equal(scaled, out * scales[:, None])


@settings(max_examples=30, **SETTINGS)
@given(X=embeddings())
def test_modality_mean_shift_finite(X):
    shift = ModalityMeanShift(ClassSubspaceProjector(text_embeddings=text_rows(X.shape[1])))
    with strict():
        out = shift.fit_transform(X)
    assert out.shape == X.shape and np.isfinite(out).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_projection_rejects_nan_and_inf(bad):
    X = np.ones((3, 4))
    X[1, 2] = bad
    for estimator in (
        ClassSubspaceProjector(text_embeddings=text_rows(4)),
        ModalityMeanShift(ClassSubspaceProjector(text_embeddings=text_rows(4))),
    ):
        with pytest.raises(ValueError, match="NaN|infinity"):
            estimator.fit(X)
    text = text_rows(4)
    text[0, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        ClassSubspaceProjector(text_embeddings=text).fit(np.ones((3, 4)))


# ------------------------------------------------------------------ retrieval


METRICS = [mean_average_precision, map_at_r, r_precision, recall_at_k]


@settings(max_examples=40, **SETTINGS)
@given(problem=problems(), exclude_self=st.booleans())
def test_metrics_in_unit_interval(problem, exclude_self):
    X, y, _ = problem
    relevant = [(np.sum(y == label) - exclude_self) > 0 for label in y]
    for metric in METRICS:
        with strict(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UndefinedMetricWarning)  # RuntimeWarning stays an error
            value = metric(X, y, X, y, exclude_self=exclude_self, batch_size=7)
        if any(relevant):
            assert 0.0 <= value <= 1.0, metric.__name__
        else:  # documented: NaN, with a warning, when no query has a relevant item
            assert np.isnan(value)
            assert any(issubclass(w.category, UndefinedMetricWarning) for w in caught)
    ap = average_precision_per_query(X, y, X, y, exclude_self=exclude_self)
    np.testing.assert_array_equal(np.isnan(ap), ~np.array(relevant))


@settings(max_examples=30, **SETTINGS)
@given(data=st.data(), problem=problems(dtypes=[np.float32, np.float64], moderate=True))
def test_metrics_ignore_row_norms(data, problem):
    X, y, Q = problem
    dtype = X.dtype.type
    x_scale = np.array(data.draw(power_of_two_scales(len(X), dtype)), dtype=dtype)
    with strict():
        expected = average_precision_per_query(X, y, X, y)
        scaled = average_precision_per_query(X * x_scale[:, None], y, X, y)
        np.testing.assert_array_equal(scaled, expected)
        scaled = average_precision_per_query(X, y, X * x_scale[:, None], y)
        np.testing.assert_array_equal(scaled, expected)


@settings(max_examples=40, **SETTINGS)
@given(problem=problems(), n_neighbors=st.integers(1, 6))
def test_retriever_finite_or_clear_error(problem, n_neighbors):
    X, y, Q = problem
    with strict():
        retriever = Retriever(n_neighbors=n_neighbors, batch_size=7).fit(X, y)
        distances, indices = retriever.kneighbors(Q)
        k = min(n_neighbors, len(X))
        assert distances.shape == indices.shape == (len(Q), k)
        assert np.isfinite(distances).all()
        assert ((distances >= -1e-6) & (distances <= 2 + 1e-6)).all()
        assert ((indices >= 0) & (indices < len(X))).all()
        assert np.isin(retriever.predict(Q), retriever.classes_).all()
        assert 0.0 <= retriever.score(X, y) <= 1.0
        if len(X) == 1:
            with pytest.raises(ValueError, match="single item"):
                retriever.kneighbors()
        else:
            _, own = retriever.kneighbors()
            assert (own != np.arange(len(X))[:, None]).all()


@settings(max_examples=25, **SETTINGS)
@given(data=st.data(), problem=problems(dtypes=[np.float32, np.float64], moderate=True))
def test_retriever_ignores_row_norms(data, problem):
    X, y, Q = problem
    dtype = X.dtype.type
    x_scale = np.array(data.draw(power_of_two_scales(len(X), dtype)), dtype=dtype)
    q_scale = np.array(data.draw(power_of_two_scales(len(Q), dtype)), dtype=dtype)
    with strict():
        expected = Retriever(n_neighbors=3).fit(X, y).kneighbors(Q)
        scaled = Retriever(n_neighbors=3).fit(X * x_scale[:, None], y)
        got = scaled.kneighbors(Q * q_scale[:, None])
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_retrieval_rejects_nan_and_inf(bad):
    X = np.eye(3)
    X_bad = X.copy()
    X_bad[0, 0] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        mean_average_precision(X_bad, [0, 1, 2], X, [0, 1, 2])
    with pytest.raises(ValueError, match="NaN|infinity"):
        mean_average_precision(X, [0, 1, 2], X_bad, [0, 1, 2])
    with pytest.raises(ValueError, match="NaN|infinity"):
        Retriever().fit(X_bad, [0, 1, 2])
    with pytest.raises(ValueError, match="NaN|infinity"):
        Retriever().fit(X, [0, 1, 2]).predict(X_bad)


# ------------------------------------------------------------------ diagnostics


@settings(max_examples=40, **SETTINGS)
@given(data=st.data(), X=embeddings())
def test_diagnostics_in_range(data, X):
    T = data.draw(embeddings(n_samples=X.shape[0], n_features=X.shape[1]))
    y = data.draw(labels(X.shape[0]))
    with strict():
        gap = modality_gap(X, T)
        align = alignment_score(X, T)
        assert 0.0 <= gap <= 2.0 + 1e-9
        assert -1.0 - 1e-9 <= align <= 1.0 + 1e-9
        if X.shape[0] < 2:
            with pytest.raises(ValueError, match="at least 2 rows"):
                similarity_distributions(X, y)
            return
        for values in similarity_distributions(X, y, T, y).values():
            assert np.isfinite(values).all()
            assert (np.abs(values) <= 1 + 1e-6).all()


@settings(max_examples=30, **SETTINGS)
@given(data=st.data(), X=embeddings(dtypes=[np.float32, np.float64], moderate=True))
def test_diagnostics_ignore_row_norms(data, X):
    scales = np.array(data.draw(power_of_two_scales(len(X), X.dtype.type)), dtype=X.dtype)
    T = X[::-1].copy()
    with strict():
        assert modality_gap(X * scales[:, None], T) == modality_gap(X, T)
        assert alignment_score(X * scales[:, None], T) == alignment_score(X, T)


@settings(max_examples=30, **SETTINGS)
@given(
    S=embeddings(dtypes=[np.float32, np.float64]),
    rank=st.one_of(st.none(), st.integers(1, 3)),
)
def test_recover_intra_similarity_finite_or_clear_error(S, rank):
    with strict():
        try:
            S_intra = recover_intra_similarity(S, rank=rank)
        except ValueError as error:
            assert any(
                word in str(error) for word in ("rank", "images", "texts", "numerically zero")
            ), str(error)
            return
    assert S_intra.shape == (S.shape[1], S.shape[1])
    assert np.isfinite(S_intra).all()
