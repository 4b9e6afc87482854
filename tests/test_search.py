"""The grids that live with the classifiers (param_grid) and the validation search (select_params)."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV

from skvlm.classifiers import (
    APEClassifier,
    CODERClassifier,
    LDAClassifier,
    NearestPrototype,
    TipAdapterClassifier,
    TipXClassifier,
    ZeroShotClassifier,
    param_grid,
    select_params,
)
from skvlm.classifiers._search import grid_combinations, reference_range, select_and_fit


def _problem(seed=0, n_classes=5, shots=4, n_val=40, d=16):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), shots)
    X = centers[y] + 1.0 * rng.normal(size=(len(y), d))
    y_val = rng.integers(0, n_classes, n_val)
    X_val = centers[y_val] + 1.0 * rng.normal(size=(n_val, d))
    W = centers + 0.7 * rng.normal(size=(n_classes, d))
    return X, y, X_val, y_val, W


def test_reference_grids_are_the_reference_lists():
    # Tip-Adapter ImageNet: search_scale [7, 3], search_step [200, 20] ->
    # beta_i = i (7 - 0.1) / 200 + 0.1, alpha_i = i (3 - 0.1) / 20 + 0.1 (utils.py:103-104).
    grid = param_grid(TipAdapterClassifier, "reference")
    assert list(grid) == ["beta", "alpha"]
    assert len(grid["beta"]) == 200 and len(grid["alpha"]) == 20
    assert grid["beta"][:2] == [0.1, 0.1345] and grid["beta"][-1] == pytest.approx(6.9655)
    assert grid["alpha"][1] == pytest.approx(0.245) and grid["alpha"][-1] == pytest.approx(2.855)
    # per-dataset scales (Flowers102 [50, 50]); the dataset name is case-insensitive.
    assert param_grid(TipAdapterClassifier, "reference", dataset="flowers102")["alpha"][
        1
    ] == pytest.approx(2.595)
    # SuS-X: alpha 20 in [0.1, 50), beta 200 in [1, 50), gamma 50 in [0.1, 30).
    tipx = param_grid(TipXClassifier, "reference")
    assert [len(v) for v in tipx.values()] == [20, 200, 50]
    assert tipx["beta"][:2] == [1.0, 1.245] and tipx["gamma"][1] == pytest.approx(0.698)
    # APE ImageNet: gamma = i * 0.5 / 5, i < 5.
    assert param_grid(APEClassifier, "reference")["gamma"] == [0.0, 0.1, 0.2, 0.3, 0.4]
    dtd = param_grid(APEClassifier, "reference", dataset="DTD")
    assert dtd["n_features_to_select"] == [400 / 1024] and dtd["variance_weight"] == [0.5]
    assert param_grid(LDAClassifier, "reference")["alpha"] == [
        1e-4,
        1e-3,
        1e-2,
        0.1,
        1.0,
        10.0,
        100.0,
    ]
    assert param_grid(NearestPrototype) == {} and param_grid(ZeroShotClassifier()) == {}


def test_reference_range_hand_case():
    assert reference_range(0.0, 1.0, 4) == [0.0, 0.25, 0.5, 0.75]


def test_instance_grids_drop_parameters_the_configuration_ignores():
    assert param_grid(LDAClassifier()) == {}
    assert list(param_grid(LDAClassifier(text_weights=np.eye(2)))) == ["alpha"]
    assert list(param_grid(TipAdapterClassifier())) == ["beta"]


def test_param_grid_bad_input():
    with pytest.raises(ValueError, match="search must be one of"):
        param_grid(TipAdapterClassifier, "fine")
    with pytest.raises(ValueError, match="no config for dataset 'Pets'"):
        param_grid(TipAdapterClassifier, "reference", dataset="Pets")
    with pytest.raises(TypeError, match="has no skvlm search grid"):
        param_grid(GridSearchCV)


def test_param_grid_is_a_grid_search_param_grid():
    X, y, _, _, W = _problem()
    search = GridSearchCV(
        TipAdapterClassifier(text_weights=W), param_grid(TipAdapterClassifier), cv=2
    )
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 36


def test_grid_order_is_the_first_key_slowest():
    assert grid_combinations({"b": [1, 2], "a": [3, 4]}) == [
        {"b": 1, "a": 3},
        {"b": 1, "a": 4},
        {"b": 2, "a": 3},
        {"b": 2, "a": 4},
    ]


def test_ties_go_to_the_first_combination_in_grid_order():
    # Two well-separated classes: every (beta, alpha) classifies the validation rows right.
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    grid = {"beta": [8.0, 1.0], "alpha": [4.0, 0.5]}
    best, table = select_params(
        TipAdapterClassifier(text_weights=np.eye(2)), X, [0, 0, 1, 1], X, [0, 0, 1, 1], grid
    )
    assert table["accuracy"].tolist() == [1.0] * 4
    assert best == {"beta": 8.0, "alpha": 4.0}
    assert table["param_beta"] == [8.0, 8.0, 1.0, 1.0]


def _dummy_case(n_zeros, n_ones):
    """DummyClassifier on a support whose majority is 0: the default strategy "prior"
    predicts 0 (accuracy = the share of 0s in validation), "constant" predicts 1."""
    from sklearn.dummy import DummyClassifier

    X = np.zeros((5, 1))
    X_val, y_val = np.zeros((n_zeros + n_ones, 1)), [0] * n_zeros + [1] * n_ones
    return DummyClassifier(constant=1), X, [0, 0, 0, 1, 1], X_val, y_val


@pytest.mark.parametrize(
    "n_zeros, n_ones, one_se",
    [
        # defaults 7/15 = 0.467, se = sqrt(0.467 * 0.533 / 15) = 0.129 >= 8/15 - 7/15
        (7, 8, "prior"),
        # defaults 4/15 = 0.267, se = 0.114 < 11/15 - 4/15 = 0.467: clear evidence
        (4, 11, "constant"),
    ],
)
def test_one_se_keeps_the_defaults_unless_a_combination_beats_them_by_a_standard_error(
    n_zeros, n_ones, one_se
):
    estimator, X, y, X_val, y_val = _dummy_case(n_zeros, n_ones)
    grid = {"strategy": ["constant", "prior"]}
    best, table = select_params(estimator, X, y, X_val, y_val, grid)
    assert best == {"strategy": "constant"}  # the argmax, both times
    assert table["accuracy"].tolist() == [n_ones / 15, n_zeros / 15]
    chosen, same_table = select_params(estimator, X, y, X_val, y_val, grid, selection="one_se")
    assert chosen == {"strategy": one_se}
    np.testing.assert_array_equal(same_table["accuracy"], table["accuracy"])
    chosen, fitted = select_and_fit(estimator, X, y, X_val, y_val, grid, selection="one_se")
    assert fitted.strategy == one_se
    assert fitted.predict(X_val[:1])[0] == int(one_se == "constant")


def test_one_se_is_the_best_when_the_defaults_are_not_in_the_grid():
    estimator, X, y, X_val, y_val = _dummy_case(7, 8)
    grid = {"strategy": ["most_frequent", "constant"]}  # the default "prior" is absent
    assert select_params(estimator, X, y, X_val, y_val, grid, selection="one_se")[0] == {
        "strategy": "constant"
    }


class _FirstRows(ClassifierMixin, BaseEstimator):
    """Predicts 1 for the rows whose single feature is below ``k``, else 0 (default k=0:
    all 0). On validation rows 0, 1, ..., n-1, the value k moves the first k predictions."""

    def __init__(self, k=0):
        self.k = k

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        return (np.asarray(X)[:, 0] < self.k).astype(int)


def _first_rows_case(n_val, n_ones):
    X_val = np.arange(n_val, dtype=float)[:, None]
    y_val = np.array([1] * n_ones + [0] * (n_val - n_ones))
    return _FirstRows(), np.zeros((2, 1)), [0, 1], X_val, y_val


def test_paired_asks_for_more_evidence_the_more_combinations_the_grid_tries():
    # 48 validation rows, the first 6 labelled 1. The defaults (k=0) get 42 right; k=6
    # gets all 48: 6 wins and no loss on the same rows. Paired difference: mean 6/48 =
    # 0.125, sd (ddof=1) sqrt((6 - 48 * 0.125**2) / 47) = 0.3340, se 0.3340 / sqrt(48) =
    # 0.0482: the gain is 2.59 standard errors.
    estimator, X, y, X_val, y_val = _first_rows_case(48, 6)
    # Against 6 other values (k = 1..6): z = Phi^-1(1 - 0.1587 / 6) = 1.94 < 2.59.
    few = {"k": list(range(7))}
    assert select_params(estimator, X, y, X_val, y_val, few, selection="paired")[0] == {"k": 6}
    # Against 63 (k = 1..63, the later ones losing rows): z = 2.80 > 2.59, the defaults.
    many = {"k": list(range(64))}
    best, table = select_params(estimator, X, y, X_val, y_val, many)
    assert best == {"k": 6} and table["accuracy"][6] == 1.0  # the argmax is the same
    chosen, fitted = select_and_fit(estimator, X, y, X_val, y_val, many, selection="paired")
    assert chosen == {"k": 0} and fitted.k == 0
    # one_se reads the unpaired se sqrt(0.875 * 0.125 / 48) = 0.0477 < 0.125: it moves.
    assert select_params(estimator, X, y, X_val, y_val, many, selection="one_se")[0] == {"k": 6}


class _Coin(ClassifierMixin, BaseEstimator):
    """Right on each row with probability 0.7, independently for every ``k`` (rows carry
    their label in the first column): every value of ``k`` is equally good."""

    def __init__(self, k=0, trial=0):
        self.k, self.trial = k, trial

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        y = np.asarray(X)[:, 0].astype(int)
        right = np.random.default_rng([self.trial, self.k]).random(len(y)) < 0.7
        return np.where(right, y, 1 - y)


def test_paired_leaves_equally_good_defaults_at_most_at_its_nominal_rate():
    # 63 alternatives no better than the defaults, 48 validation rows, 300 trials: the
    # argmax leaves the defaults almost always, one_se (one test, not 63) most of the
    # time; the paired rule at most 15.9 % of the time (the union bound), whatever the
    # grid's size.
    y_val = np.tile([0, 1], 24)
    X_val = y_val[:, None].astype(float)
    grid = {"k": list(range(64))}
    left = {"best": 0, "one_se": 0, "paired": 0}
    for trial in range(300):
        estimator = _Coin(trial=trial)
        for selection in left:
            chosen = select_params(estimator, X_val, y_val, X_val, y_val, grid, selection)[0]
            left[selection] += chosen["k"] != 0
    assert left["best"] / 300 > 0.9
    assert left["one_se"] / 300 > 0.5
    assert left["paired"] / 300 <= 0.159


def test_paired_credits_rows_both_get_right_where_one_se_cannot():
    # 100 rows, the first 4 labelled 1, grid {k: 0, 4}: one alternative, z = 1.
    # one_se: the defaults' 0.96 has se sqrt(0.96 * 0.04 / 100) = 0.0196 and the gain
    # is 0.04 > 0.0196, both move. Make the defaults less sure: 50 of the 100 rows are
    # labelled 2, which neither predicts: defaults 46/100, se sqrt(0.46 * 0.54 / 100) =
    # 0.0498 > the gain 0.04, one_se keeps them. Paired: 4 wins, no loss, mean 0.04,
    # sd sqrt((4 - 100 * 0.0016) / 99) = 0.1970, se 0.0197 < 0.04: paired moves.
    estimator, X, y, X_val, y_val = _first_rows_case(100, 4)
    y_val[50:] = 2
    grid = {"k": [0, 4]}
    assert select_params(estimator, X, y, X_val, y_val, grid, selection="one_se")[0] == {"k": 0}
    chosen, fitted = select_and_fit(estimator, X, y, X_val, y_val, grid, selection="paired")
    assert chosen == {"k": 4} and fitted.k == 4


def test_paired_keeps_the_defaults_on_one_validation_row_and_ties():
    estimator, X, y, _, _ = _first_rows_case(1, 1)
    one_row = select_params(estimator, X, y, [[0.0]], [1], {"k": [0, 1]}, selection="paired")
    assert one_row[0] == {"k": 0}  # one row has no spread to test a gain against
    # k=-5 predicts what the defaults predict (all 0) and comes first in the grid: the
    # argmax takes it, the paired rule sees no gain and keeps the defaults.
    estimator, X, y, X_val, y_val = _first_rows_case(10, 3)
    grid = {"k": [-5, 0]}
    assert select_params(estimator, X, y, X_val, y_val, grid)[0] == {"k": -5}
    assert select_params(estimator, X, y, X_val, y_val, grid, selection="paired")[0] == {"k": 0}


def test_the_command_line_offers_every_selection_rule():
    from skvlm.__main__ import build_parser
    from skvlm.classifiers._search import SELECTIONS

    fewshot = build_parser()._subparsers._group_actions[0].choices["fewshot"]
    (action,) = [a for a in fewshot._actions if a.dest == "selection"]
    assert tuple(action.choices) == SELECTIONS


def test_unknown_selection_is_refused_with_the_choices():
    estimator, X, y, X_val, y_val = _dummy_case(7, 8)
    with pytest.raises(
        ValueError, match=r"selection must be one of \['best', 'one_se', 'paired'\]"
    ):
        select_params(estimator, X, y, X_val, y_val, {"strategy": ["prior"]}, selection="1se")


def test_the_best_combination_is_the_best_validation_accuracy_and_refits_the_same():
    X, y, X_val, y_val, W = _problem()
    grid = {"beta": [0.5, 5.0, 50.0], "alpha": [0.0, 1.0, 30.0]}
    est = TipAdapterClassifier(text_weights=W)
    best, table = select_params(est, X, y, X_val, y_val, grid)
    accs = [
        np.mean(est.set_params(**c).fit(X, y).predict(X_val) == y_val)
        for c in grid_combinations(grid)
    ]
    np.testing.assert_allclose(table["accuracy"], accs)
    assert best == grid_combinations(grid)[int(np.argmax(accs))]


class _Spy:
    """Records the row count of every array a classifier scores."""

    def __init__(self, monkeypatch, classes):
        self.seen = []
        for cls in classes:
            for name in ("_scores", "_grid_correct"):
                if hasattr(cls, name):
                    monkeypatch.setattr(cls, name, self._wrap(getattr(cls, name)))

    def _wrap(self, method):
        def recorded(est, X, *args):
            self.seen.append(np.asarray(X).copy())
            return method(est, X, *args)

        return recorded


@pytest.mark.parametrize(
    "make",
    [
        lambda W: TipAdapterClassifier(text_weights=W),
        lambda W: TipXClassifier(text_weights=W),
        lambda W: APEClassifier(text_weights=W, n_features_to_select=8),
        lambda W: LDAClassifier(text_weights=W),
    ],
)
@pytest.mark.parametrize("selection", ["best", "one_se", "paired"])
def test_search_scores_only_validation_rows_and_ignores_any_test_set(monkeypatch, make, selection):
    X, y, X_val, y_val, W = _problem()
    spy = _Spy(monkeypatch, [TipAdapterClassifier, TipXClassifier, APEClassifier, LDAClassifier])
    est = make(W)
    best, table = select_params(est, X, y, X_val, y_val, "default", selection)
    assert spy.seen and all(np.array_equal(seen, X_val) for seen in spy.seen)
    # the same support + validation with other test sets cannot change the choice: the
    # search never sees them; rerunning it gives the same values.
    assert select_params(est, X, y, X_val, y_val, "default", selection)[0] == best


def test_grid_values_outside_their_range_are_clear_errors():
    X, y, X_val, y_val, W = _problem()
    est = TipAdapterClassifier(text_weights=W)
    with pytest.raises(
        ValueError, match=r"In the grid: The 'beta' parameter of TipAdapterClassifier"
    ):
        select_params(est, X, y, X_val, y_val, {"beta": [1.0, -2.0]})
    with pytest.raises(ValueError, match="'gamma' is not a parameter of TipAdapterClassifier"):
        select_params(est, X, y, X_val, y_val, {"gamma": [1.0]})
    with pytest.raises(ValueError, match=r"grid\['beta'\] is empty"):
        select_params(est, X, y, X_val, y_val, {"beta": []})
    with pytest.raises(ValueError, match="validation row"):
        select_params(est, X, y, X_val[:0], y_val[:0], {"beta": [1.0]})
    with pytest.raises(ValueError, match="features"):
        select_params(est, X, y, X_val[:, :3], y_val, {"beta": [1.0]})


_VECTORISED = [
    (lambda W: TipAdapterClassifier(text_weights=W, batch_size=7), "default"),
    (lambda W: TipAdapterClassifier(batch_size=7), {"beta": [0.5, 3.0, 20.0]}),
    (lambda W: TipXClassifier(text_weights=W, batch_size=7), "default"),
    (
        lambda W: TipXClassifier(text_weights=W, rescale="fit"),
        {"alpha": [0.5, 4.0], "beta": [1.0, 9.0], "gamma": [0.0, 2.0, 30.0]},
    ),
    (
        lambda W: APEClassifier(text_weights=W, batch_size=7),
        {
            "beta": [1.0, 6.0],
            "alpha": [0.5, 3.0],
            "gamma": [0.0, 0.4, 3.0],
            "n_features_to_select": [6, 12],
        },
    ),
    (lambda W: LDAClassifier(text_weights=W), "reference"),
    # text weights of the wrong classes: the cache has to overrule them, so alpha matters
    (
        lambda W: CODERClassifier(
            text_weights=np.roll(W, 1, axis=0),
            text_bank=np.vstack([W, W[::-1] + 0.3]),
            batch_size=7,
        ),
        {"beta": [1.0, 20.0, 72.0], "alpha": [0.3, 3.0, 30.0], "temperature": [1.0, 2.0]},
    ),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("make, grid", _VECTORISED)
def test_vectorised_search_equals_fitting_every_combination(make, grid, dtype):
    from skvlm.classifiers._search import _check_grid, _generic_correct, _vectorised_correct

    X, y, X_val, y_val, W = _problem(seed=3, n_val=60)
    X, X_val = X.astype(dtype), X_val.astype(dtype)
    est = make(W)
    combos = grid_combinations(_check_grid(est, grid))
    fast = _vectorised_correct(est, X, y, X_val, y_val, combos)
    slow = _generic_correct(est, X, y, X_val, y_val, combos)
    assert fast is not None
    np.testing.assert_array_equal(fast, slow)
    assert len(set(slow)) > 1  # the grid matters on this problem: the test can fail


def test_image_only_lda_ignores_alpha_in_the_vectorised_search_too():
    X, y, X_val, y_val, _ = _problem()
    best, table = select_params(LDAClassifier(), X, y, X_val, y_val, {"alpha": [0.1, 1.0]})
    acc = np.mean(LDAClassifier().fit(X, y).predict(X_val) == y_val)
    assert best == {"alpha": 0.1} and table["accuracy"].tolist() == [acc, acc]


def test_unseen_validation_labels_are_never_correct():
    X, y, X_val, y_val, W = _problem()
    y_val = np.where(y_val == 4, 9, y_val)  # class 9 has no support rows
    for est in (TipAdapterClassifier(text_weights=W), NearestPrototype()):
        best, table = select_params(
            est, X, y, X_val, y_val, {"beta": [1.0]} if "beta" in est.get_params() else {}
        )
        acc = np.mean(clone_fit(est, X, y).predict(X_val) == y_val)
        assert table["accuracy"][0] == pytest.approx(acc)


def clone_fit(est, X, y):
    from sklearn.base import clone

    return clone(est).fit(X, y)


def test_pipelines_get_prefixed_grids_and_the_same_choice_as_refitting_each():
    from sklearn.pipeline import Pipeline

    from skvlm import ClassSubspaceProjector
    from skvlm.classifiers._search import _check_grid, _generic_correct, _vectorised_correct

    X, y, X_val, y_val, W = _problem(seed=5, n_val=60)
    pipe = Pipeline(
        [
            ("pca", ClassSubspaceProjector(text_embeddings=W, n_components=3)),
            ("clf", LDAClassifier(normalize=False, text_weights=W)),
        ]
    )
    grid = param_grid(pipe)
    assert list(grid) == ["clf__alpha"]
    combos = grid_combinations(_check_grid(pipe, grid))
    fast = _vectorised_correct(pipe, X, y, X_val, y_val, combos)
    np.testing.assert_array_equal(fast, _generic_correct(pipe, X, y, X_val, y_val, combos))
    with pytest.raises(ValueError, match="In the grid: The 'alpha' parameter of LDAClassifier"):
        select_params(pipe, X, y, X_val, y_val, {"clf__alpha": [-1.0]})
    # a grid over an earlier step falls back to refitting the whole pipeline
    best, table = select_params(pipe, X, y, X_val, y_val, {"pca__n_components": [2, 4]})
    assert len(table["params"]) == 2


def test_tuning_beats_bad_defaults_on_held_out_rows():
    # The text weights are noisy class centres (zero-shot is poor) and the support
    # labels are clean, so the cache should weigh far more than the default alpha = 1:
    # the search must find that on validation rows, and it must pay off on test rows
    # it never saw.
    rng = np.random.default_rng(0)
    n_classes, d = 6, 32
    centers = rng.normal(size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), 8)
    X = centers[y] + 1.2 * rng.normal(size=(len(y), d))
    y_val = np.repeat(np.arange(n_classes), 4)
    X_val = centers[y_val] + 1.2 * rng.normal(size=(len(y_val), d))
    y_test = rng.integers(0, n_classes, 300)
    X_test = centers[y_test] + 1.2 * rng.normal(size=(300, d))
    est = TipAdapterClassifier(text_weights=centers + 5.0 * rng.normal(size=centers.shape))
    best, _ = select_params(est, X, y, X_val, y_val, "default")
    untuned = np.mean(est.fit(X, y).predict(X_test) == y_test)
    tuned = np.mean(est.set_params(**best).fit(X, y).predict(X_test) == y_test)
    assert best["alpha"] > 1.0
    assert tuned > untuned + 0.05  # measured: 0.593 vs 0.503
