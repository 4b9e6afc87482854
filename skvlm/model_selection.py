"""Few-shot cross-validation splits (k labelled shots per class, repeated over seeds)."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import column_or_1d

from ._sklearn import Interval, validate_parameter_constraints


def _check_class_labels(y):
    """Refuse what is not a set of class labels, as ``StratifiedKFold`` does.

    ``np.unique`` would otherwise make one class of all NaN labels, split continuous
    targets into one-row classes, or fail deep inside on a mix of strings and numbers.
    """
    if len(y) == 0:
        raise ValueError("y is empty: there is nothing to split.")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        bad = np.flatnonzero(~np.isfinite(y))
        raise ValueError(
            f"y has {bad.size} NaN or infinite label(s) (positions {bad[:10].tolist()}); "
            "drop the unlabelled rows first."
        )
    y_type = type_of_target(y, input_name="y")
    if y_type not in ("binary", "multiclass"):
        raise ValueError(
            f"FewShotSplit needs class labels, but y is {y_type!r} "
            f"(first values {y[:3].tolist()}); pass one label of one type per row."
        )


def _warn_untested(classes, untested, n_shots, why):
    """Warn that the scores of a split will not cover some classes."""
    if not untested.any():
        return
    names = ", ".join(repr(classes[i].item()) for i in np.flatnonzero(untested)[:5])
    more = f" and {int(untested.sum()) - 5} more" if untested.sum() > 5 else ""
    warnings.warn(
        f"FewShotSplit(n_shots={n_shots}) leaves {int(untested.sum())} class(es) without "
        f"test rows ({names}{more}): {why}, so the test scores do not measure them. Use "
        "fewer shots, or more rows of those classes.",
        UserWarning,
        stacklevel=3,
    )


class FewShotSplit(BaseCrossValidator):
    """k-shot train / test splits: exactly ``n_shots`` training rows per class.

    Each split draws ``n_shots`` rows of every class for training and tests on the
    rest (or on a random ``test_size`` part of the rest). Usable as ``cv=`` anywhere in
    scikit-learn.

    Hyper-parameters are chosen as the few-shot references do (CoOp's rule): on
    ``min(k, 4)`` validation shots per class drawn apart from the k-shot support, never
    on the test rows. :func:`skvlm.studies.run_fewshot_study` (``tune=True``, the
    default) does it; by hand, draw ``k + min(k, 4)`` rows per class, split them into
    the support and the validation shots with a second ``FewShotSplit(k, n_splits=1)``
    and choose with :func:`skvlm.classifiers.select_params` (see the example). This
    works at 1 shot, where a search nested inside the k support rows has no row left
    to validate on.

    Parameters
    ----------
    n_shots : int
        Training rows per class.
    n_splits : int, default=3
        Number of splits (seeds).
    test_size : int, float or None, default=None
        ``None``: every row not used for training; an int: that many test rows; a
        float in (0, 1]: that fraction of the remaining rows.
    random_state : int, RandomState or None, default=None
        An int gives the same splits on every call.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.model_selection import FewShotSplit
    >>> y = np.array([0, 0, 0, 1, 1, 1, 1])
    >>> cv = FewShotSplit(n_shots=2, n_splits=2, random_state=0)
    >>> [(np.bincount(y[train]).tolist(), len(test)) for train, test in cv.split(y, y)]
    [([2, 2], 3), ([2, 2], 3)]

    A 1-shot support and its validation shot per class, apart from the test rows:

    >>> k = 1
    >>> pool, test = next(FewShotSplit(k + min(k, 4), n_splits=1, random_state=0).split(y, y))
    >>> support, val = next(FewShotSplit(k, n_splits=1, random_state=0).split(pool, y[pool]))
    >>> np.bincount(y[pool[support]]).tolist(), np.bincount(y[pool[val]]).tolist(), len(test)
    ([1, 1], [1, 1], 3)
    """

    _parameter_constraints = {
        "n_shots": [Interval(Integral, 1, None, closed="left")],
        "n_splits": [Interval(Integral, 1, None, closed="left")],
        "test_size": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="right"),
            None,
        ],
        "random_state": ["random_state"],
    }

    def __init__(self, n_shots, *, n_splits=3, test_size=None, random_state=None):
        self.n_shots = n_shots
        self.n_splits = n_splits
        self.test_size = test_size
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        """The number of splits, ``n_splits``."""
        return self.n_splits

    def split(self, X, y, groups=None):
        """Yield (train, test) index arrays.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Only its length is used.
        y : array-like of shape (n_samples,)
            Class labels.
        groups : ignored

        Yields
        ------
        train, test : ndarray of int
        """
        validate_parameter_constraints(
            self._parameter_constraints,
            {name: getattr(self, name) for name in self._parameter_constraints},
            caller_name=type(self).__name__,
        )
        if y is None:
            raise ValueError("FewShotSplit needs the class labels y.")
        y = column_or_1d(np.asarray(y), warn=False)
        if X is not None and len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}.")
        _check_class_labels(y)
        classes, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
        short = counts < self.n_shots
        if short.any():
            examples = ", ".join(
                f"{classes[i].item()!r} ({counts[i]} rows)" for i in np.flatnonzero(short)[:5]
            )
            raise ValueError(
                f"n_shots={self.n_shots} but some classes have fewer rows: {examples}."
            )
        n_remaining = len(y) - self.n_shots * len(classes)
        if n_remaining == 0:
            raise ValueError(
                f"n_shots={self.n_shots} uses every row of every class: no test rows remain."
            )
        n_test = self._n_test(n_remaining)
        _warn_untested(classes, counts == self.n_shots, self.n_shots, "none is left")
        rng = check_random_state(self.random_state)
        seeds = rng.randint(np.iinfo(np.int32).max, size=self.n_splits)
        members = [np.flatnonzero(y_idx == c) for c in range(len(classes))]
        warned = False
        for seed in seeds:
            split_rng = np.random.default_rng(seed)
            train = np.concatenate(
                [split_rng.choice(rows, self.n_shots, replace=False) for rows in members]
            )
            mask = np.ones(len(y), dtype=bool)
            mask[train] = False
            test = np.flatnonzero(mask)
            if n_test < len(test):
                test = np.sort(split_rng.choice(test, n_test, replace=False))
                untested = np.bincount(y_idx[test], minlength=len(classes)) == 0
                if not warned and (untested & ~(counts == self.n_shots)).any():
                    warned = True  # once per call: the test_size draw left them out
                    _warn_untested(
                        classes,
                        untested,
                        self.n_shots,
                        f"the test_size={self.test_size!r} draw took none",
                    )
            yield np.sort(train), test

    def _n_test(self, n_remaining):
        if self.test_size is None:
            return n_remaining
        if isinstance(self.test_size, Integral):
            if self.test_size > n_remaining:
                raise ValueError(
                    f"test_size={self.test_size} exceeds the {n_remaining} rows left after "
                    "drawing the shots."
                )
            return int(self.test_size)
        return max(1, int(round(self.test_size * n_remaining)))

    def _iter_test_indices(self, X=None, y=None, groups=None):
        for _, test in self.split(X, y, groups):
            yield test
