"""Hyper-parameter grids that live with the classifiers, and a validation-set search.

Every few-shot reference chooses its hyper-parameters on a validation split
(Tip-Adapter ``main.py:47``, SuS-X ``tipx.py:68-111``, ICLR24 ``main_few_shots.py:68-77``,
APE ``main.py:74-93``, CODER ``classify_few_shot.py:37-70``). :func:`param_grid` returns
the grid of a classifier as a ``GridSearchCV`` ``param_grid`` (a dict of lists), in one
of two sizes: ``"default"``, a few values per parameter around the published optima
that keep a study fast, and ``"reference"``, the reference code's own grid.
:func:`select_params` scores a grid on a validation set (and only on it) and returns
the best values, or, under the ``"one_se"`` and ``"paired"`` rules, the estimator's own
values unless the best beats them clearly; for the training-free classifiers it computes
the affinities once per sharpness and treats the linear weights as a sweep, so a grid
costs little more than one fit and predict.
"""

import itertools
import numbers
from statistics import NormalDist

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_consistent_length, column_or_1d

from .._sklearn import validate_parameter_constraints

_SEARCHES = ("default", "reference")
#: How a search picks among the grid's combinations (see :func:`select_params`).
SELECTIONS = ("best", "one_se", "paired")
# One standard error as a one-sided tail probability, 1 - Phi(1) = 0.159: "paired" with
# a single alternative to the defaults asks for a gain of one standard error, as
# "one_se" does.
_ONE_SE_TAIL = 1.0 - NormalDist().cdf(1.0)


def reference_range(low, high, n_steps):
    """The references' search list ``[low + i (high - low) / n_steps for i < n_steps]``.

    Tip-Adapter, APE and SuS-X all build their grids this way from a
    ``search_scale`` and a ``search_step`` (``high`` itself is never reached).

    Examples
    --------
    >>> reference_range(0.1, 3, 4)
    [0.1, 0.825, 1.55, 2.275]
    """
    return [round(low + i * (high - low) / n_steps, 12) for i in range(n_steps)]


def param_grid(estimator, search="default", *, dataset=None):
    """The hyper-parameter grid of a skvlm classifier, as a ``GridSearchCV`` param_grid.

    Parameters
    ----------
    estimator : estimator instance or class
        A skvlm classifier, or a :class:`~sklearn.pipeline.Pipeline` ending in one
        (its grid, named ``<step>__<param>``). Given an instance, parameters its
        configuration ignores are left out (e.g. ``alpha``, the text weight, of an
        image-only :class:`LDAClassifier` or :class:`TipAdapterClassifier`).
    search : {"default", "reference"}, default="default"
        ``"default"``: a small grid around the published optima (fast enough for the
        demo); ``"reference"``: the reference code's own grid (thousands of points
        for the cache models; see each classifier's ``_SEARCH_GRIDS`` source lines).
    dataset : str or None, default=None
        A CoOp dataset name (``"DTD"``, ``"Flowers102"``, ...): with
        ``search="reference"``, the reference's per-dataset config where it has one
        (Tip-Adapter, APE); None means its ImageNet config. The other grids do not
        depend on the dataset.

    Returns
    -------
    dict of str to list
        Parameter name to candidate values. Its key order is the search order of
        :func:`select_params` (the first key varies slowest), the references' loop
        order.

    Examples
    --------
    >>> from skvlm.classifiers import TipAdapterClassifier, param_grid
    >>> grid = param_grid(TipAdapterClassifier)
    >>> list(grid)
    ['beta', 'alpha']
    >>> len(param_grid(TipAdapterClassifier, "reference")["beta"])
    200
    """
    if search not in _SEARCHES:
        raise ValueError(f"search must be one of {list(_SEARCHES)}, got {search!r}.")
    if _is_pipeline(estimator):
        name, last = estimator.steps[-1]
        grid = param_grid(last, search, dataset=dataset)
        return {f"{name}__{key}": values for key, values in grid.items()}
    cls = estimator if isinstance(estimator, type) else type(estimator)
    grids = getattr(cls, "_search_grids", None)
    if grids is None:
        raise TypeError(
            f"{cls.__name__} has no skvlm search grid; param_grid knows the skvlm "
            "classifiers (TipAdapterClassifier, TipXClassifier, APEClassifier, "
            "LDAClassifier, CODERClassifier, LinearProbeClassifier, ...)."
        )
    grid = grids(search, check_reference_dataset(dataset))
    if not isinstance(estimator, type):
        unused = (
            estimator._unused_search_params() if hasattr(estimator, "_unused_search_params") else ()
        )
        grid = {name: values for name, values in grid.items() if name not in unused}
    return {name: list(values) for name, values in grid.items()}


#: The 11 CoOp datasets (skvlm.datasets.COOP_DATASETS' names) the references configure.
COOP_NAMES = (
    "ImageNet",
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "Flowers102",
    "Food101",
    "FGVCAircraft",
    "SUN397",
    "DTD",
    "EuroSAT",
    "UCF101",
)


def check_reference_dataset(dataset):
    """The canonical CoOp name of ``dataset`` (case-insensitive), or None for None."""
    if dataset is None:
        return None
    by_key = {name.lower(): name for name in COOP_NAMES}
    key = str(dataset).lower()
    if key not in by_key:
        raise ValueError(
            f"The references have no config for dataset {dataset!r}; known: "
            f"{sorted(COOP_NAMES)}, or None for their ImageNet configs."
        )
    return by_key[key]


def grid_combinations(grid):
    """Every combination of ``grid``, the first key varying slowest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*grid.values())]


def _check_grid(estimator, grid):
    """Resolve "default"/"reference", check names, emptiness and every value's range."""
    if isinstance(grid, str):
        grid = param_grid(estimator, grid)
    if not isinstance(grid, dict):
        raise TypeError(
            f"grid must be a dict of parameter name -> list of values (or 'default' / "
            f"'reference'), got {type(grid).__name__}."
        )
    valid = estimator.get_params(deep=True)
    checked = {}
    for key, values in grid.items():
        if key not in valid:
            raise ValueError(
                f"grid parameter {key!r} is not a parameter of {type(estimator).__name__}; "
                f"its parameters are {sorted(valid)}."
            )
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"grid[{key!r}] must be a list of values, got {values!r}.")
        values = list(values)
        if not values:
            raise ValueError(f"grid[{key!r}] is empty; give at least one value.")
        owner, name = _owner_of(estimator, key)
        constraints = getattr(owner, "_parameter_constraints", {})
        for value in values:
            if name in constraints:
                try:
                    validate_parameter_constraints(
                        {name: constraints[name]}, {name: value}, caller_name=type(owner).__name__
                    )
                except (ValueError, TypeError) as error:  # sklearn's InvalidParameterError
                    raise type(error)(f"In the grid: {error}") from None
        checked[key] = values
    return checked


def _owner_of(estimator, key):
    """The (sub-)estimator a ``step__param`` name belongs to, and the bare name."""
    path, _, name = key.rpartition("__")
    return (estimator.get_params(deep=True)[path] if path else estimator), name


def _is_pipeline(estimator):
    from sklearn.pipeline import Pipeline

    return isinstance(estimator, Pipeline)


def select_params(estimator, X_support, y_support, X_val, y_val, grid="default", selection="best"):
    """Choose hyper-parameters by accuracy on a validation set (never on test rows).

    Each combination is fitted on the support rows and scored on the validation
    rows only; nothing else is predicted.

    Parameters
    ----------
    estimator : classifier
        Its other parameters are kept; it is not modified.
    X_support, y_support : array-like
        The k-shot support set the method is fitted on.
    X_val, y_val : array-like
        The validation rows (disjoint from the support and from any test set).
    grid : dict of str to list, "default" or "reference", default="default"
        Candidate values per parameter (:func:`param_grid` gives each classifier's).
        Every value is checked against the parameter's valid range first.
    selection : {"best", "one_se", "paired"}, default="best"
        ``"best"``: the combination of highest validation accuracy, the references'
        rule. ``"one_se"``: the estimator's own values when the grid holds them and no
        combination beats their validation accuracy ``a`` by more than one standard
        error ``sqrt(a (1 - a) / n_val)``, else the best: the one-standard-error rule
        (Hastie, Tibshirani & Friedman, *Elements of Statistical Learning*, 7.10),
        with the defaults as the preferred model. CoOp's validation sets hold
        ``min(k, 4)`` shots per class, so one validation row more or less often
        decides the argmax; the rule leaves the defaults only on clear evidence.
        ``"paired"``: the estimator's own values when the grid holds them, unless
        the best combination's gain over them, row by row on the same validation
        rows, exceeds ``z`` standard errors of that paired difference, with
        ``z = Phi^-1(1 - 0.159 / m)`` for the grid's ``m`` other combinations: one
        standard error for a single alternative, Bonferroni-widened for more (``z``
        = 1.94 for LDA's 6 other alphas, 2.48 for CODER's 24, 2.80 for APE's 63).
        The argmax of many combinations beats the defaults on a few dozen rows by
        luck alone; this asks for a gain that luck over ``m`` tries rarely gives:
        if no combination is better than the defaults, the chance of leaving them
        is at most 0.159 whatever the grid's size (the union bound over the ``m``
        paired tests, each at 0.159 / ``m``, in the normal approximation).
        It fits and predicts the defaults and the best on the validation rows once
        more than ``"best"``, for the per-row test.

    Returns
    -------
    best_params : dict
        The chosen combination. Under ``"best"``, ties go to the first combination
        in the grid's order: keys in the dict's order, the first key varying slowest,
        values in the order given (the references' nested loops keep the first best
        the same way, ``if acc > best_acc``).
    table : dict
        ``"params"`` (every combination, in search order), ``"param_<name>"`` (the
        values of each parameter) and ``"accuracy"`` (validation accuracy, a fraction):
        like ``GridSearchCV.cv_results_``, a ``pandas.DataFrame(table)`` away from a table.

    Notes
    -----
    Classifiers with a vectorised search (Tip-Adapter, Tip-X, APE, LDA, CODER) are
    fitted once per value of the parameters that change the fit, and score the rest
    of the grid on cached affinities; the result equals fitting each combination.
    :class:`LinearProbeClassifier` fits its ``C`` values in increasing order, each
    warm-started from the previous solution (equal to cold fits up to the solver's
    tolerance). Any other estimator is cloned, ``set_params`` and fitted per combination.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.classifiers import TipAdapterClassifier, select_params
    >>> X = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    >>> best, table = select_params(TipAdapterClassifier(), X, [0, 0, 1, 1],
    ...                             [[0.9, 0.3], [0.2, 0.8]], [0, 1], {"beta": [1.0, 5.0]})
    >>> best, table["accuracy"].tolist()
    ({'beta': 1.0}, [1.0, 1.0])
    """
    best, table, _ = _search(estimator, X_support, y_support, X_val, y_val, grid, selection)
    return best, table


def select_and_fit(estimator, X_support, y_support, X_val, y_val, grid="default", selection="best"):
    """:func:`select_params`, and the estimator fitted on the support at the chosen values.

    Where the search itself fitted the chosen combination on the support (a fit per
    combination, or the linear probe's C path), that fit is returned instead of a refit.

    Returns
    -------
    best_params : dict
    fitted : estimator
        A clone of ``estimator`` with ``best_params``, fitted on the support rows.
    """
    best, _, fitted = _search(estimator, X_support, y_support, X_val, y_val, grid, selection)
    if fitted is None:
        fitted = clone(estimator).set_params(**best).fit(X_support, y_support)
    return best, fitted


def _search(estimator, X_support, y_support, X_val, y_val, grid, selection="best"):
    """The chosen combination, the table and its fit when the search made one."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}.")
    grid = _check_grid(estimator, grid)
    y_val = column_or_1d(y_val, warn=True)
    check_consistent_length(X_val, y_val)
    if len(y_val) == 0:
        raise ValueError("select_params needs at least one validation row; got none.")
    combos = grid_combinations(grid)
    correct, fitted = _path_correct(estimator, X_support, y_support, X_val, y_val, combos)
    if correct is None:
        correct = _vectorised_correct(estimator, X_support, y_support, X_val, y_val, combos)
    if correct is None:
        correct, fitted = _generic_search(estimator, X_support, y_support, X_val, y_val, combos)
    accuracy = np.asarray(correct, dtype=np.float64) / len(y_val)
    best = int(np.argmax(accuracy))  # first maximum: the first best in search order
    default = _default_index(estimator, combos) if selection != "best" else None
    if default is not None and default != best:
        if selection == "one_se":
            a = accuracy[default]
            if accuracy[best] - a <= np.sqrt(a * (1 - a) / len(y_val)) + 1e-12:
                best, fitted = default, None  # the search's fit was of another combination
        else:
            best, fitted = _paired_choice(
                estimator, combos, default, best, fitted, X_support, y_support, X_val, y_val
            )
    table = {"params": combos}
    for key in grid:
        table[f"param_{key}"] = [combo[key] for combo in combos]
    table["accuracy"] = accuracy
    return dict(combos[best]), table, fitted


def _paired_choice(estimator, combos, default, best, best_fit, X_support, y_support, X_val, y_val):
    """(index, fit) of the best combination if its paired gain over the defaults on
    the validation rows clears the Bonferroni-widened standard error, else the defaults'.

    ``best_fit`` is the search's own fit of the best combination when it made one
    (the linear probe's C path, a fit per combination), reused instead of a refit."""

    def fit(i):
        return clone(estimator).set_params(**combos[i]).fit(X_support, y_support)

    fits = [fit(default), best_fit if best_fit is not None else fit(best)]
    right = [np.asarray(model.predict(X_val) == y_val, dtype=np.float64) for model in fits]
    difference = right[1] - right[0]
    if len(difference) < 2:  # no spread to test against: no evidence either way
        return default, fits[0]
    se = np.std(difference, ddof=1) / np.sqrt(len(difference))
    z = NormalDist().inv_cdf(1.0 - _ONE_SE_TAIL / (len(combos) - 1))
    if difference.mean() > max(z * se, 0.0) + 1e-12:
        return best, fits[1]
    return default, fits[0]


def _default_index(estimator, combos):
    """Position of the estimator's own values among ``combos``, or None."""
    own = estimator.get_params(deep=True)
    for index, combo in enumerate(combos):
        if all(_same_value(own[key], value) for key, value in combo.items()):
            return index
    return None


def _same_value(a, b):
    if isinstance(a, numbers.Number) and isinstance(b, numbers.Number):
        return bool(a == b)
    return a is b or (type(a) is type(b) and a == b)


def _generic_correct(estimator, X_support, y_support, X_val, y_val, combos):
    """Correct counts of a fit per combination."""
    return _generic_search(estimator, X_support, y_support, X_val, y_val, combos)[0]


def _generic_search(estimator, X_support, y_support, X_val, y_val, combos):
    """Correct counts of a fit per combination, and the fit of the first best one."""
    correct, best = [], None
    for combo in combos:
        fitted = clone(estimator).set_params(**combo).fit(X_support, y_support)
        correct.append(int(np.sum(fitted.predict(X_val) == y_val)))
        if best is None or correct[-1] > max(correct[:-1]):
            best = fitted
    return correct, best


def _path_correct(estimator, X_support, y_support, X_val, y_val, combos):
    """Counts and best fit through a classifier's ``_path_correct`` (the linear probe's
    warm-started C path), or (None, None) when it has none or the grid names others."""
    head, last, prefix = None, estimator, ""
    if _is_pipeline(estimator):
        name, last = estimator.steps[-1]
        prefix = f"{name}__"
    if not hasattr(last, "_path_correct"):
        return None, None
    if not all(key.startswith(prefix) for combo in combos for key in combo):
        return None, None
    sweep = [{key[len(prefix) :]: value for key, value in c.items()} for c in combos]
    if prefix and len(estimator) > 1:
        head = clone(estimator[:-1]).fit(X_support, y_support)  # fitted on support only
        X_support, X_val = head.transform(X_support), head.transform(X_val)
    correct, fitted = clone(last)._path_correct(X_support, y_support, X_val, y_val, sweep)
    if prefix:
        best = sweep[int(np.argmax(correct))]
        pipe = clone(estimator).set_params(**{prefix + k: v for k, v in best.items()})
        pipe.steps = (list(head.steps) if head is not None else []) + [(name, fitted)]
        fitted = pipe
    return correct, fitted


def _vectorised_correct(estimator, X_support, y_support, X_val, y_val, combos):
    """Correct counts per combination through ``_grid_correct``, or None if not possible.

    The parameters an estimator's ``_grid_correct`` sweeps without a refit are in
    its ``_grid_params``; combinations are grouped by the values of all the others
    (one fit per group, in first-appearance order). A pipeline whose grid names only
    its last step is fitted up to that step once, on the support rows.
    """
    if _is_pipeline(estimator):
        name, last = estimator.steps[-1]
        prefix = f"{name}__"
        if not all(key.startswith(prefix) for combo in combos for key in combo):
            return None
        if not hasattr(last, "_grid_correct"):
            return None
        if len(estimator) > 1:  # a one-step pipeline has no head
            head = clone(estimator[:-1]).fit(X_support, y_support)  # fitted on support only
            X_support, X_val = head.transform(X_support), head.transform(X_val)
        estimator = last
        combos = [{key[len(prefix) :]: value for key, value in c.items()} for c in combos]
    swept = getattr(estimator, "_grid_params", None)
    if swept is None or not hasattr(estimator, "_grid_correct"):
        return None
    groups = {}
    for index, combo in enumerate(combos):
        refit = tuple(sorted((k, _hashable(v)) for k, v in combo.items() if k not in swept))
        groups.setdefault(refit, []).append(index)
    correct = np.zeros(len(combos), dtype=np.int64)
    for indices in groups.values():
        first = combos[indices[0]]
        fitted = clone(estimator).set_params(**first).fit(X_support, y_support)
        target = _class_indices(fitted.classes_, y_val)
        sweep = [{k: v for k, v in combos[i].items() if k in swept} for i in indices]
        correct[indices] = fitted._grid_correct(X_val, target, sweep)
    return correct


def _class_indices(classes, y):
    """Index of each label in ``classes``; -1 (never predicted) for unseen labels."""
    position = np.searchsorted(classes, y)
    position = np.clip(position, 0, len(classes) - 1)
    found = classes[position] == y
    return np.where(found, position, -1)


def _hashable(value):
    if isinstance(value, (numbers.Number, str, bool, type(None))):
        return value
    return repr(value)


def sweep_groups(sweep, key, default):
    """(value, [indices]) of ``sweep`` grouped by ``combo[key]`` (first-appearance order)."""
    groups = {}
    for index, combo in enumerate(sweep):
        groups.setdefault(combo.get(key, default), []).append(index)
    return groups.items()


def count_correct(scores, target):
    """How many rows' argmax is their target (``target`` -1: never)."""
    return int(np.count_nonzero(np.argmax(scores, axis=1) == target))
