import pickle

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skvlm._sklearn import InvalidParameterError
from skvlm.retrieval import (
    Retriever,
    average_precision_per_query,
    map_at_r,
    mean_average_precision,
    r_precision,
    recall_at_k,
    retrieval_scorer,
)


def _unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _brute_relevance(queries, query_labels, gallery, gallery_labels, exclude_self=False):
    """Per query: relevance flags in ranked order, by a stable sort on (-score, index)."""
    scores = (_unit(queries) @ _unit(gallery).T).astype(np.float32)
    out = []
    for i, row in enumerate(scores):
        keep = np.arange(row.shape[0])
        if exclude_self:
            keep = keep[keep != i]
        order = keep[np.argsort(-row[keep], kind="stable")]
        out.append(np.asarray(gallery_labels)[order] == query_labels[i])
    return out


def _reference_ap(flags):
    """The torchmetrics/Cross-the-Gap definition: mean of precision at each hit."""
    positions = np.flatnonzero(flags) + 1
    return np.mean(np.arange(1, positions.shape[0] + 1) / positions)


def _clustered(n, n_classes, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, d))
    labels = rng.integers(0, n_classes, n)
    return centres[labels] + 0.9 * rng.standard_normal((n, d)), labels


# ------------------------------------------------------------------- hand cases


def test_ap_hand_case():
    # Ranking of query [1, 0.1]: g0 (label 0), g1 (label 1), g2 (label 1): hits at
    # ranks 2 and 3, AP = (1/2 + 2/3) / 2.
    gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    ap = average_precision_per_query([[1.0, 0.1]], [1], gallery, [0, 1, 1])
    assert ap == pytest.approx([(1 / 2 + 2 / 3) / 2])
    # Top-R (R = 2) holds one hit at rank 2: MAP@R = (1/2) / 2, R-precision = 1/2.
    assert map_at_r([[1.0, 0.1]], [1], gallery, [0, 1, 1]) == pytest.approx(0.25)
    assert r_precision([[1.0, 0.1]], [1], gallery, [0, 1, 1]) == pytest.approx(0.5)
    assert recall_at_k([[1.0, 0.1]], [1], gallery, [0, 1, 1], k=[1, 2]) == {1: 0.0, 2: 1.0}


def test_ties_broken_by_gallery_order():
    # Three identical gallery rows: all tie. The relevant one is ranked by its position.
    gallery = np.array([[1.0, 0.0]] * 3)
    for position, expected in [(0, 1.0), (1, 1 / 2), (2, 1 / 3)]:
        labels = [0, 0, 0]
        labels[position] = 1
        ap = average_precision_per_query([[1.0, 0.0]], [1], gallery, labels)
        assert ap[0] == pytest.approx(expected)
    # Scaling a gallery row does not break the tie (cosine, not dot product).
    ap = average_precision_per_query([[1.0, 0.0]], [1], gallery * [[1], [5], [2]], [0, 0, 1])
    assert ap[0] == pytest.approx(1 / 3)


def test_cosine_not_dot_product():
    # Dot product would rank the long irrelevant row first; cosine ranks the relevant one first.
    gallery = np.array([[10.0, 8.0], [1.0, 0.0]])
    assert mean_average_precision([[1.0, 0.0]], [1], gallery, [0, 1]) == pytest.approx(1.0)


def test_exclude_self_by_global_index_across_batches():
    X, y = _clustered(23, 3, seed=1)
    flags = _brute_relevance(X, y, X, y, exclude_self=True)
    expected = np.array([_reference_ap(f) if f.any() else np.nan for f in flags])
    for batch_size in (1, 4, 1024):
        got = average_precision_per_query(X, y, X, y, exclude_self=True, batch_size=batch_size)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # Without exclusion every query finds itself first.
    with_self = average_precision_per_query(X, y, X, y)
    assert np.all(with_self >= expected - 1e-12)
    assert not np.allclose(with_self, expected)


def test_singleton_class_with_exclude_self_is_undefined():
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    with pytest.warns(UndefinedMetricWarning, match="1 of 3 queries"):
        value = mean_average_precision(X, [0, 0, 1], X, [0, 0, 1], exclude_self=True)
    assert value == pytest.approx(1.0)
    ap = average_precision_per_query(X, [0, 0, 1], X, [0, 0, 1], exclude_self=True)
    assert np.isnan(ap[2])


# ------------------------------------------------------------------- against references


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_average_precision_on_tie_free_data(seed):
    queries, query_labels = _clustered(30, 4, seed=seed)
    gallery, gallery_labels = _clustered(300, 4, seed=seed + 10)
    scores = _unit(queries) @ _unit(gallery).T
    expected = [
        average_precision_score(gallery_labels == label, row)
        for row, label in zip(scores, query_labels)
    ]
    got = average_precision_per_query(queries, query_labels, gallery, gallery_labels, batch_size=7)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_matches_brute_force_ranking_with_many_ties(exclude_self):
    # 25 distinct random rows, each repeated 8 times (scaled) in shuffled order: the
    # copies tie exactly in any arithmetic, distinct rows differ far beyond rounding.
    # Ranks must follow (-score, gallery index), as the bucketed ranking reproduces.
    rng = np.random.default_rng(3)
    X = np.repeat(rng.standard_normal((25, 3)), 8, axis=0)[rng.permutation(200)]
    X *= rng.choice([1.0, 2.0, 4.0], size=(200, 1))
    y = rng.integers(0, 5, 200)
    flags = _brute_relevance(X, y, X, y, exclude_self=exclude_self)
    n_relevant = np.array([f.sum() for f in flags])
    ap = np.array([_reference_ap(f) for f in flags])
    top_r = [f[:r] for f, r in zip(flags, n_relevant)]
    map_r = [np.sum((np.cumsum(t) / np.arange(1, t.size + 1))[t]) / t.size for t in top_r]
    kwargs = dict(exclude_self=exclude_self, batch_size=64)
    np.testing.assert_allclose(average_precision_per_query(X, y, X, y, **kwargs), ap, rtol=1e-12)
    assert mean_average_precision(X, y, X, y, **kwargs) == pytest.approx(ap.mean())
    assert map_at_r(X, y, X, y, **kwargs) == pytest.approx(np.mean(map_r))
    assert r_precision(X, y, X, y, **kwargs) == pytest.approx(np.mean([t.mean() for t in top_r]))
    expected_recall = {k: np.mean([f[:k].any() for f in flags]) for k in (1, 5)}
    assert recall_at_k(X, y, X, y, k=[1, 5], **kwargs) == pytest.approx(expected_recall)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_matches_brute_force_when_relevant_items_lead(exclude_self):
    # Tight clusters: every relevant item outranks most of the gallery (the pruned
    # path of the ranking), plus exact duplicates so that ties occur there too.
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((6, 16)) * 5
    y = rng.integers(0, 6, 150)
    X = centres[y] + 3.0 * rng.standard_normal((150, 16))
    X[1::5] = X[0::5][: X[1::5].shape[0]]
    y[1::5] = y[0::5][: y[1::5].shape[0]]
    flags = _brute_relevance(X, y, X, y, exclude_self=exclude_self)
    expected = [_reference_ap(f) if f.any() else np.nan for f in flags]
    got = average_precision_per_query(X, y, X, y, exclude_self=exclude_self, batch_size=32)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.nanmin(got) < 0.9  # not trivially perfect
    worst_in_top_half = [np.flatnonzero(f).max() < f.size // 2 for f in flags if f.any()]
    assert np.mean(worst_in_top_half) > 0.5


def test_all_scores_equal_ranks_by_position():
    gallery = np.ones((6, 2))
    labels = np.array([0, 1, 0, 0, 1, 0])
    # hits at ranks 2 and 5
    ap = average_precision_per_query([[1.0, 1.0]], [1], gallery, labels)
    assert ap[0] == pytest.approx((1 / 2 + 2 / 5) / 2)


def test_labels_may_be_strings_and_cross_modal_recall():
    # Image -> caption retrieval as in CLIP_benchmark: label = image id.
    images = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    captions = np.array([[0.9, 0.1, 0.0], [0.1, 0.0, 0.9], [0.0, 0.2, 1.0], [0.1, 0.8, 0.3]])
    caption_ids = ["a", "c", "c", "b"]
    assert recall_at_k(images, ["a", "b", "c"], captions, caption_ids, k=1) == 1.0
    assert recall_at_k(captions, caption_ids, images, ["a", "b", "c"], k=1) == 1.0


# ------------------------------------------------------------------- bad input


def test_label_absent_from_gallery_is_excluded_with_warning():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    with pytest.warns(UndefinedMetricWarning, match="1 of 3 queries"):
        value = mean_average_precision(queries, [0, 1, 9], gallery, [0, 1])
    assert value == pytest.approx(1.0)
    with pytest.warns(UndefinedMetricWarning, match="1 of 1 queries"):
        assert np.isnan(mean_average_precision([[1.0, 0.0]], [5], gallery, [0, 1]))


def test_bad_input_errors():
    gallery = np.eye(3)
    with pytest.raises(ValueError, match="gallery is empty"):
        mean_average_precision(np.eye(3), [0, 1, 2], np.empty((0, 3)), [])
    with pytest.raises(ValueError, match="4 features but the gallery has 3"):
        mean_average_precision(np.ones((2, 4)), [0, 1], gallery, [0, 1, 2])
    with pytest.raises(ValueError, match="query_labels has 1 entries for 2 rows"):
        mean_average_precision(np.ones((2, 3)), [0], gallery, [0, 1, 2])
    with pytest.raises(ValueError, match="exclude_self"):
        mean_average_precision(np.ones((2, 3)), [0, 1], gallery, [0, 1, 2], exclude_self=True)
    with pytest.raises(ValueError, match="NaN"):
        mean_average_precision([[np.nan, 0, 0]], [0], gallery, [0, 1, 2])


_METRIC_FUNCTIONS = [
    average_precision_per_query,
    mean_average_precision,
    map_at_r,
    r_precision,
    recall_at_k,
]


@pytest.mark.parametrize("metric", _METRIC_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"batch_size": 0},
            r"'batch_size' parameter of {name} must be an int in the range \[1, inf\)",
        ),
        ({"batch_size": 2.5}, r"'batch_size' parameter of {name} must be an int"),
        (
            {"exclude_self": "yes"},
            r"'exclude_self' parameter of {name} must be an instance of 'bool'",
        ),
    ],
)
def test_metric_parameters_are_validated_like_sklearn_metrics(metric, bad, message):
    gallery = np.eye(3)
    with pytest.raises(InvalidParameterError, match=message.format(name=metric.__name__)):
        metric(gallery, [0, 1, 2], gallery, [0, 1, 2], **bad)


def test_metric_options_are_keyword_only():
    gallery = np.eye(3)
    with pytest.raises(TypeError, match="positional"):
        mean_average_precision(gallery, [0, 1, 2], gallery, [0, 1, 2], True)


def test_recall_cutoffs_are_validated():
    gallery = np.eye(3)
    with pytest.raises(InvalidParameterError, match="'k' parameter of recall_at_k"):
        recall_at_k(gallery, [0, 1, 2], gallery, [0, 1, 2], k=0)
    with pytest.raises(InvalidParameterError, match="'k' parameter of recall_at_k"):
        recall_at_k(gallery, [0, 1, 2], gallery, [0, 1, 2], k="5")
    with pytest.raises(ValueError, match=r"k must be a positive integer.*got 0 in k=\[1, 0\]"):
        recall_at_k(gallery, [0, 1, 2], gallery, [0, 1, 2], k=[1, 0])
    with pytest.raises(ValueError, match=r"got 1.5"):
        recall_at_k(gallery, [0, 1, 2], gallery, [0, 1, 2], k=(1, 1.5))


def test_undefined_query_warning_points_at_the_callers_line():
    gallery = np.eye(2)
    for metric in (mean_average_precision, map_at_r, r_precision, recall_at_k):
        with pytest.warns(UndefinedMetricWarning) as record:
            metric([[1.0, 0.0]], [5], gallery, [0, 1])
        assert record[0].filename == __file__, metric.__name__


# ------------------------------------------------------------------- Retriever


def test_kneighbors_matches_brute_force_and_excludes_self():
    X, y = _clustered(40, 3, seed=4)
    ret = Retriever(n_neighbors=4, batch_size=7).fit(X, y)
    scores = _unit(X[:5]) @ _unit(X).T
    distances, indices = ret.kneighbors(X[:5])
    np.testing.assert_array_equal(indices, np.argsort(-scores, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(distances, 1 - np.sort(scores, axis=1)[:, ::-1][:, :4], atol=1e-6)
    self_indices = ret.kneighbors(return_distance=False)
    assert not np.any(self_indices == np.arange(40)[:, None])
    np.testing.assert_array_equal(
        self_indices[:5], np.argsort(-scores, axis=1, kind="stable")[:, 1:5]
    )


def test_kneighbors_ties_follow_gallery_order():
    gallery = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    ret = Retriever(n_neighbors=2).fit(gallery, [0, 1, 1, 1])
    assert ret.kneighbors([[1.0, 0.0]], return_distance=False).tolist() == [[1, 2]]


def test_predict_votes_and_score_is_map():
    gallery = np.array([[1.0, 0.0], [0.95, 0.3], [0.9, 0.4], [0.0, 1.0]])
    labels = np.array(["x", "y", "y", "z"])
    ret = Retriever(n_neighbors=3).fit(gallery, labels)
    # Neighbours of [1, 0]: x, y, y -> majority y; with one neighbour, x.
    assert ret.predict([[1.0, 0.0]]).tolist() == ["y"]
    assert ret.set_params(n_neighbors=1).predict([[1.0, 0.0]]).tolist() == ["x"]
    # Two-way tie (x, y with two neighbours) goes to the nearer neighbour's label.
    assert ret.set_params(n_neighbors=2).predict([[1.0, 0.0]]).tolist() == ["x"]
    queries = np.array([[1.0, 0.05], [0.1, 1.0]])
    assert ret.score(queries, ["y", "z"]) == pytest.approx(
        mean_average_precision(queries, ["y", "z"], gallery, labels)
    )


def test_retriever_unlabelled_and_pickle():
    X = np.eye(3)
    ret = Retriever(n_neighbors=1).fit(X)
    assert ret.kneighbors([[0.0, 1.0, 0.0]], return_distance=False).tolist() == [[1]]
    with pytest.raises(ValueError, match="without labels"):
        ret.predict(X)
    clone = pickle.loads(pickle.dumps(ret))
    np.testing.assert_array_equal(clone.gallery_, ret.gallery_)
    with pytest.raises(ValueError, match="3 features"):
        ret.kneighbors(np.ones((1, 4)))


def test_gridsearch_maximises_map_and_scorer_uses_pipeline():
    X, y = _clustered(120, 3, d=6, seed=5)
    noise = np.random.default_rng(0).standard_normal((120, 30)) * 3.0
    X_noisy = np.hstack([X, noise])
    keep_signal = FunctionTransformer(lambda Z: Z[:, :6])
    pipe = Pipeline([("select", "passthrough"), ("ret", Retriever())])
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, {"select": ["passthrough", keep_signal]}, cv=cv)
    search.fit(X_noisy, y)
    assert search.best_params_["select"] is keep_signal
    scorer = retrieval_scorer("mAP")
    fitted = search.best_estimator_
    expected = mean_average_precision(
        X[:10], y[:10], fitted[-1].gallery_, fitted[-1].gallery_labels_
    )
    assert scorer(fitted, X_noisy[:10], y[:10]) == pytest.approx(expected)
    search_r1 = GridSearchCV(
        pipe,
        {"select": ["passthrough", keep_signal]},
        cv=cv,
        scoring=retrieval_scorer("recall_at_k", k=1),
    )
    assert search_r1.fit(X_noisy, y).best_params_["select"] is keep_signal
    with pytest.raises(InvalidParameterError, match="'metric' parameter of retrieval_scorer"):
        retrieval_scorer("ndcg")
    with pytest.raises(InvalidParameterError, match="'k' parameter of retrieval_scorer"):
        retrieval_scorer("recall_at_k", k=0)
