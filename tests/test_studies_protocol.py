"""The few-shot study's protocol: parameters chosen on validation shots, never on test rows."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from skvlm.studies import run_fewshot_study
from skvlm.studies._methods import REGISTRY, FewShotMethod


def _blobs(rng, n_per_class=12, n_classes=3, d=6, noise=0.3):
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = 2 * np.eye(d)[y] + rng.normal(scale=noise, size=(len(y), d))
    return X, y


class _Spy(ClassifierMixin, BaseEstimator):
    """A nearest-mean classifier that records every row it is asked to predict."""

    predicted = []

    def __init__(self, shift=0.0):
        self.shift = shift

    @classmethod
    def _search_grids(cls, search, dataset):
        return {"shift": [0.0, 0.5, 1.0]}

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_]) + self.shift
        return self

    def predict(self, X):
        _Spy.predicted.append(np.array(X, copy=True))
        distances = ((X[:, None, :] - self.means_[None]) ** 2).sum(-1)
        return self.classes_[np.argmin(distances, axis=1)]


def _rows_in(A, B):
    """Whether each row of A is a row of B."""
    return np.array([np.any(np.all(np.isclose(B, a), axis=1)) for a in A])


def test_search_scores_only_validation_rows_and_test_rows_once(monkeypatch):
    rng = np.random.default_rng(0)
    X, y = _blobs(rng)
    X_test, y_test = _blobs(rng, n_per_class=5)
    monkeypatch.setitem(REGISTRY, "spy", FewShotMethod("spy", "Spy", _Spy))
    monkeypatch.setattr("skvlm.studies._fewshot.FEWSHOT_METHODS", {**{"spy": "Spy"}})
    _Spy.predicted = []
    runs = run_fewshot_study(
        X, y, X_test=X_test, y_test=y_test, methods=["spy"], shots=[1, 2], seeds=[0, 1]
    )
    test_calls = [rows for rows in _Spy.predicted if _rows_in(rows, X_test).any()]
    search_calls = [rows for rows in _Spy.predicted if not _rows_in(rows, X_test).any()]
    # one scoring of the test split per (shots, seed), on all of it and nothing else
    assert len(test_calls) == 4 and all(np.array_equal(rows, X_test) for rows in test_calls)
    # the grid (3 values) was scored on pool rows only, min(k, 4) per class
    assert len(search_calls) == 4 * 3
    assert all(_rows_in(rows, X).all() for rows in search_calls)
    assert sorted({len(rows) for rows in search_calls}) == [3, 6]
    assert runs["n_val"].tolist() == [3, 3, 6, 6]
    assert all(set(p) == {"shift"} for p in runs["params"])


def test_chosen_params_do_not_depend_on_the_test_rows():
    rng = np.random.default_rng(1)
    X, y = _blobs(rng, n_per_class=14, noise=0.8)
    W = np.eye(6)[[1, 2, 0]]  # a misleading text classifier, so the choice matters
    X_a, y_a = _blobs(rng, n_per_class=6, noise=0.8)
    X_b, y_b = _blobs(rng, n_per_class=9, noise=1.5)
    kw = {
        "text_weights": W,
        "methods": ["lda", "tip_adapter", "tip_x"],
        "shots": [1, 4],
        "seeds": [0, 1],
    }
    a = run_fewshot_study(X, y, X_test=X_a, y_test=y_a, **kw)
    b = run_fewshot_study(X, y, X_test=X_b, y_test=y_b, **kw)
    assert a["params"].tolist() == b["params"].tolist()
    assert not np.allclose(a["acc1"], b["acc1"])  # the test sets did differ
    assert (a["n_test"] == 18).all() and (b["n_test"] == 27).all()


@pytest.mark.parametrize("selection", ["best", "one_se", "paired"])
def test_tuning_beats_bad_defaults(selection):
    # LDA's default alpha=1 leans on the text classifier (100 x cos), which is wrong
    # here; the images alone separate the classes. Tuning picks a large alpha, also
    # under the one-standard-error and paired rules: the evidence against the defaults is clear.
    rng = np.random.default_rng(2)
    X, y = _blobs(rng, n_per_class=30, n_classes=4, d=8, noise=0.4)
    W = np.eye(8)[[1, 2, 3, 0]]
    kw = {"text_weights": W, "methods": ["lda"], "shots": [4, 8], "seeds": [0, 1, 2]}
    tuned = run_fewshot_study(X, y, selection=selection, **kw)
    untuned = run_fewshot_study(X, y, tune=False, **kw)
    assert tuned["acc1"].mean() > untuned["acc1"].mean() + 0.3
    assert all(p["alpha"] >= 10 for p in tuned["params"])
    assert all(p == {"alpha": 1.0} for p in untuned["params"])  # the defaults, recorded


def test_untuned_accuracy_beside_the_tuned_one_is_the_untuned_study_on_the_same_split():
    rng = np.random.default_rng(2)
    X, y = _blobs(rng, n_per_class=30, n_classes=4, d=8, noise=0.4)
    X_test, y_test = _blobs(rng, n_per_class=10, n_classes=4, d=8, noise=0.4)
    W = np.eye(8)[[1, 2, 3, 0]]  # a misleading text classifier: LDA's default alpha is bad
    kw = {
        "X_test": X_test,
        "y_test": y_test,
        "text_weights": W,
        "methods": ["prototype", "lda"],
        "shots": [4, 8],
        "seeds": [0, 1],
    }
    both = run_fewshot_study(X, y, compare_untuned=True, **kw)
    untuned = run_fewshot_study(X, y, tune=False, **kw)
    # with a fixed test split the support does not depend on tuning: the same fits
    lda = both["method"] == "lda"
    np.testing.assert_array_equal(both.loc[lda, "acc1_untuned"], untuned.loc[lda, "acc1"])
    assert both.loc[~lda, "acc1_untuned"].isna().all()  # no grid, nothing to compare
    assert (both.loc[lda, "acc1"] > both.loc[lda, "acc1_untuned"]).all()
    assert "acc1_untuned" not in run_fewshot_study(X, y, **kw).columns
    assert "acc1_untuned" not in run_fewshot_study(X, y, tune=False, compare_untuned=True, **kw)


def test_tuning_gain_is_paired_per_seed_and_the_finding_reads_its_interval():
    import pandas as pd

    from skvlm.studies._findings import tuning_finding, tuning_gain, tuning_summary
    from skvlm.studies._intervals import t_interval

    runs = pd.DataFrame(
        {
            "labeling": "shape",
            "method": ["a"] * 4 + ["p"] * 4,
            "seed": [0, 0, 1, 1] * 2,
            "shots": [1, 2] * 4,
            "acc1": [0.6, 0.8, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5],
            "acc1_untuned": [0.5, 0.7, 0.5, 0.6, np.nan, np.nan, np.nan, np.nan],
        }
    )
    g = tuning_gain(runs, "shape", "a")
    # per seed, tuned - untuned averaged over shots: (0.1 + 0.1) / 2 and (0.0 + 0.3) / 2
    assert g["mean"] == pytest.approx(0.125)
    assert g["ci95"] == pytest.approx(list(t_interval([0.1, 0.15])[1]))
    assert tuning_gain(runs, "shape", "p") is None and tuning_gain(runs, "colour", "a") is None
    finding = tuning_finding(runs, "shape")
    assert set(finding["acc1_gain"]) == {"a"}
    assert finding["verdict"] == "no clear difference"  # 2 seeds: t(1) spans zero here
    summary = tuning_summary(runs, "shape")["methods"]["a"]
    assert summary["tuned_acc1"] == pytest.approx(0.7)
    assert summary["untuned_acc1"] == pytest.approx(0.575)
    assert summary["tuned_at_least_untuned"]
    assert summary["per_shots"]["2"] == pytest.approx({"tuned": 0.85, "untuned": 0.65})
    assert tuning_finding(runs.drop(columns="acc1_untuned"), "shape") is None


def test_one_shot_tuning_works_and_validation_is_disjoint():
    rng = np.random.default_rng(3)
    X, y = _blobs(rng, n_per_class=3)
    runs = run_fewshot_study(X, y, methods=["tip_adapter"], shots=[1], seeds=[0, 1, 2])
    # 1 support + 1 validation shot per class leave 1 test row per class
    assert (runs["n_val"] == 3).all() and (runs["n_test"] == 3).all()


def test_validation_pool_and_clear_errors():
    rng = np.random.default_rng(4)
    X, y = _blobs(rng, n_per_class=4)
    X_val, y_val = _blobs(rng, n_per_class=4)
    runs = run_fewshot_study(
        X, y, X_val=X_val, y_val=y_val, methods=["tip_adapter"], shots=[2], seeds=[0]
    )
    assert runs["n_val"].item() == 6 and runs["n_test"].item() == 6  # 4 - 2 shots per class
    X5, y5 = _blobs(rng, n_per_class=5)  # 2 support + 2 validation + 1 test row per class
    assert len(run_fewshot_study(X5, y5, methods=["prototype"], shots=[2], seeds=[0])) == 1
    with pytest.raises(ValueError, match=r"class 2 has 4 rows in the training pool.*2 support"):
        run_fewshot_study(X5[:-1], y5[:-1], methods=["prototype"], shots=[2], seeds=[0])
    with pytest.raises(ValueError, match=r"class 0 has 1 rows in the validation pool"):
        run_fewshot_study(
            X, y, X_val=X_val[3:], y_val=y_val[3:], methods=["prototype"], shots=[2], seeds=[0]
        )
    with pytest.raises(ValueError, match="X_test has 5 features but X has 6"):
        run_fewshot_study(X, y, X_test=X[:, :5], y_test=y, methods=["prototype"])
    with pytest.raises(ValueError, match="X_test and y_test go together"):
        run_fewshot_study(X, y, X_test=X, methods=["prototype"])
    with pytest.raises(ValueError, match="search must be one of"):
        run_fewshot_study(X, y, methods=["prototype"], search="fine")
    # untuned, the same pool runs as before (no validation rows needed)
    assert (
        len(
            run_fewshot_study(
                X5[:-1], y5[:-1], methods=["prototype"], shots=[2], seeds=[0], tune=False
            )
        )
        == 1
    )


def test_reference_search_and_views():
    rng = np.random.default_rng(5)
    X, y = _blobs(rng, n_per_class=8)
    W = np.eye(6)[:3]
    runs = run_fewshot_study(
        X, y, text_weights=W, methods=["lda"], shots=[2], seeds=[0], search="reference"
    )
    assert runs["params"].item()["alpha"] in [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0]
    views = np.stack([X + rng.normal(scale=0.05, size=X.shape) for _ in range(5)])
    runs = run_fewshot_study(
        X,
        y,
        text_weights=W,
        support_views=views,
        methods=["lda", "lda_views"],
        shots=[1],
        seeds=[0],
    )
    assert set(runs["method"]) == {"lda", "lda_views"}
    skipped = run_fewshot_study(X, y, methods=["lda_views"], shots=[1], seeds=[0]).attrs["skipped"]
    assert "support_views" in skipped["lda_views"]
    with pytest.raises(ValueError, match="support_views must have shape"):
        run_fewshot_study(X, y, support_views=views[:, :3], methods=["lda_views"])


def test_registry_is_the_one_place_a_method_is_described():
    from skvlm.studies import FEWSHOT_METHODS
    from skvlm.studies._methods import DEFAULT_FEWSHOT

    assert list(FEWSHOT_METHODS) == list(REGISTRY)
    assert set(DEFAULT_FEWSHOT) <= set(REGISTRY)
    text = np.eye(4)[:2]
    # seed 002's pipelines: PCA← rows reach the classifier without re-normalisation
    for key in ("prototype_pca", "lda_pca"):
        pipe = REGISTRY[key].pipeline(text, text)
        assert [name for name, _ in pipe.steps] == ["pca", "clf"]
        assert pipe[-1].normalize is False
    assert REGISTRY["zeroshot"].pipeline(None, None) == "needs class-name text weights"
    assert isinstance(REGISTRY["lda"].pipeline(None, None)[-1].get_params(), dict)
