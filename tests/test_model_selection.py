import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import NearestCentroid

from skvlm.model_selection import FewShotSplit

Y = np.repeat(np.array(["a", "b", "c"]), [10, 7, 5])


@pytest.mark.parametrize("n_shots", [1, 2, 5])
def test_exactly_k_shots_per_class_and_disjoint_test(n_shots):
    for train, test in FewShotSplit(n_shots, n_splits=4, random_state=0).split(Y, Y):
        labels, counts = np.unique(Y[train], return_counts=True)
        assert labels.tolist() == ["a", "b", "c"] and (counts == n_shots).all()
        assert np.intersect1d(train, test).size == 0
        assert len(train) + len(test) == len(Y)


def test_reproducible_with_random_state_and_varied_across_splits():
    first = [t.tolist() for t, _ in FewShotSplit(2, n_splits=3, random_state=7).split(Y, Y)]
    again = [t.tolist() for t, _ in FewShotSplit(2, n_splits=3, random_state=7).split(Y, Y)]
    other = [t.tolist() for t, _ in FewShotSplit(2, n_splits=3, random_state=8).split(Y, Y)]
    assert first == again and first != other
    assert len({tuple(t) for t in first}) == 3


def test_test_size_int_and_float():
    _, test = next(FewShotSplit(1, test_size=4, random_state=0).split(Y, Y))
    assert len(test) == 4
    _, test = next(FewShotSplit(1, test_size=0.5, random_state=0).split(Y, Y))
    assert len(test) == round(0.5 * (len(Y) - 3))


def test_class_with_too_few_rows_is_named():
    with pytest.raises(ValueError, match=r"'c' \(5 rows\)"):
        list(FewShotSplit(6).split(Y, Y))


def test_bad_parameters_and_missing_y():
    with pytest.raises(ValueError, match="n_shots"):
        list(FewShotSplit(0).split(Y, Y))
    with pytest.raises(ValueError, match="labels y"):
        list(FewShotSplit(1).split(Y, None))
    with pytest.raises(ValueError, match="no test rows"):
        list(FewShotSplit(5).split(Y[-5:], Y[-5:]))


@pytest.mark.parametrize(
    "y, message",
    [
        (
            np.array([0.0, np.nan, 0.0, np.nan, 1.0, 1.0]),
            r"2 NaN or infinite label\(s\) \(positions \[1, 3\]\)",
        ),
        (np.array([0.5, 0.5, 1.5, 1.5, 2.5, 2.5]), "'continuous'"),
        (np.array([1, "a", 1, "a", 1, "a"], dtype=object), "'unknown'"),
        (np.array([]), "y is empty"),
    ],
)
def test_what_is_not_class_labels_is_refused(y, message):
    # np.unique would make one class of the NaNs, or fail inside on mixed types.
    with pytest.raises(ValueError, match=message):
        list(FewShotSplit(1, random_state=0).split(y, y))


def test_integral_float_and_boolean_labels_are_classes():
    for y in (np.repeat([1.0, 2.0], 3), np.repeat([True, False], 3)):
        train, test = next(FewShotSplit(1, random_state=0).split(y, y))
        assert sorted(y[train].tolist()) == sorted(set(y.tolist())) and len(test) == 4


def test_usable_as_cv_in_sklearn():
    X = np.random.default_rng(0).normal(size=(len(Y), 3)) + (Y == "a")[:, None] * 3
    cv = FewShotSplit(3, n_splits=2, random_state=0)
    assert cv.get_n_splits() == 2
    assert len(cross_val_score(NearestCentroid(), X, Y, cv=cv)) == 2
    search = GridSearchCV(NearestCentroid(), {"shrink_threshold": [None, 0.1]}, cv=cv).fit(X, Y)
    assert len(search.cv_results_["split1_test_score"]) == 2
