"""The few-shot study: every method on the same k-shot splits, tuned on validation shots.

For each shot count k and seed: the k-shot support (``FewShotSplit(k, random_state=seed)``
on the training pool) and a disjoint validation set of ``min(k, 4)`` shots per class
(CoOp's rule) drawn from the rest of the pool, or from a given validation pool; each
method's hyper-parameters are chosen on the validation rows over its grid
(:func:`skvlm.classifiers.select_params`, vectorised on the embeddings), the method is
refitted on the support with the chosen values and scored on the test rows, which the
search never sees.
"""

import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.utils import check_array
from sklearn.utils.validation import column_or_1d

from ..classifiers._search import SELECTIONS, select_and_fit
from ..model_selection import FewShotSplit
from ._common import check_methods, logger, pandas, progress_to_stderr
from ._intervals import t_interval
from ._methods import DEFAULT_FEWSHOT, FEWSHOT_METHODS, REGISTRY

_RUN_COLUMNS = [
    "method",
    "label",
    "shots",
    "seed",
    "acc1",
    "mean_per_class_recall",
    "n_test",
    "n_val",
    "params",
    "seconds",
]
_SEARCHES = ("default", "reference")


def validation_shots(k):
    """CoOp's validation shots per class for a k-shot support: ``min(k, 4)``."""
    return min(int(k), 4)


def run_fewshot_study(
    X,
    y,
    *,
    X_test=None,
    y_test=None,
    X_val=None,
    y_val=None,
    text_weights=None,
    pca_text_embeddings=None,
    support_views=None,
    methods=None,
    shots=(1, 2, 4, 8, 16),
    seeds=(0, 1, 2),
    tune=True,
    search="default",
    dataset=None,
    selection="best",
    compare_untuned=False,
    verbose=0,
):
    """k-shot classification of embeddings by several methods, over shots and seeds.

    Per (k, seed): the support is ``FewShotSplit(k, n_splits=1, random_state=seed)`` on
    (X, y); with ``tune``, ``min(k, 4)`` validation rows per class (from the other rows
    of (X, y), or from (X_val, y_val)) choose each method's hyper-parameters, and it is
    refitted on the support. Every method is scored on the same test rows: (X_test,
    y_test), else the rows of (X, y) in neither set.

    Parameters
    ----------
    X, y : array-like of shape (n_samples, d) and (n_samples,)
        The training pool: image embeddings and their class labels.
    X_test, y_test, X_val, y_val : array-like, default=None
        A fixed test split (CoOp's ``test``); a validation pool (CoOp's ``val``).
    text_weights, pca_text_embeddings : array-like, default=None
        The class-name text classifier (rows in ``numpy.unique(y)`` order) and the text
        rows PCA← projects onto; the methods that need them are skipped without them.
    support_views : array-like of shape (n_views, n_samples, d), default=None
        Augmented views of X's rows: ``"lda_views"`` fits on each view as a row.
    methods : list of str, default=None
        Keys of :data:`FEWSHOT_METHODS`; None: the registry's default methods.
    shots, seeds : sequence of int
        Shot counts (one leaving a class without test rows is skipped, warned); seeds.
    tune, search, dataset, selection : bool, {"default", "reference"}, str, {"best", "one_se", "paired"}
        Choose hyper-parameters on validation shots (False: the defaults, tested on every
        non-support row) over :func:`skvlm.classifiers.param_grid`'s ``search`` grids
        (``dataset``, a CoOp name: the reference's per-dataset grid), by ``selection``
        (:func:`~skvlm.classifiers.select_params`; "best" is the references' rule).
    compare_untuned, verbose : bool, int, default=False, 0
        With ``tune``, also score each method with a grid at its defaults on the same
        support and test rows (``acc1_untuned``); log progress lines to stderr.

    Returns
    -------
    runs : pandas.DataFrame
        One row per (method, shots, seed): ``method``, ``label``, ``shots``, ``seed``,
        ``acc1``, ``mean_per_class_recall``, ``n_test``, ``n_val``, ``params`` (the values
        used) and ``seconds``; ``attrs["skipped"]`` (why not run), ``attrs["warnings"]``.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.repeat([0, 1], 20)
    >>> X = 3 * np.eye(4)[y] + np.random.default_rng(0).normal(scale=0.3, size=(40, 4))
    >>> runs = run_fewshot_study(X, y, methods=["prototype", "tip_adapter"], shots=[2], seeds=[0])
    >>> runs[["method", "n_val", "n_test"]].to_dict("records")[1]
    {'method': 'tip_adapter', 'n_val': 4, 'n_test': 32}
    >>> sorted(runs["params"][1])  # chosen on the validation shots (image-only: no alpha)
    ['beta']
    """
    data = _check_data(X, y, X_test, y_test, X_val, y_val, support_views)
    setting = _setting(tune, search, dataset, compare_untuned, selection)
    methods = check_methods(methods, FEWSHOT_METHODS, DEFAULT_FEWSHOT)
    has_views = data["views"] is not None
    pipelines, skipped = _method_pipelines(methods, text_weights, pca_text_embeddings, has_views)
    usable = _usable_shots(shots, data, tune)
    with progress_to_stderr(verbose):
        rows, notes = _run_splits(pipelines, data, usable, seeds, setting)
    return _runs_frame(rows, notes, skipped, setting)


def _setting(tune, search, dataset, compare_untuned, selection="best"):
    if search not in _SEARCHES:
        raise ValueError(f"search must be one of {list(_SEARCHES)}, got {search!r}.")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}.")
    return {
        "tune": bool(tune),
        "search": search,
        "selection": selection,
        "dataset": dataset,
        "compare_untuned": bool(tune and compare_untuned),
    }


def _runs_frame(rows, notes, skipped, setting):
    columns = _RUN_COLUMNS + (["acc1_untuned"] if setting["compare_untuned"] else [])
    runs = pandas().DataFrame(rows, columns=columns)
    runs.attrs["skipped"] = skipped
    runs.attrs["warnings"] = [f"{message} (first at {k} shots)" for message, k in notes.items()]
    return runs


def _run_splits(pipelines, data, usable, seeds, setting):
    """One result row per (shots, seed, method); the distinct warnings, by first shots."""
    rows, notes = [], {}
    for k in usable:
        logger.info(
            f"few-shot: {k} shot(s) x {len(seeds)} seed(s) x {len(pipelines)} "
            f"method(s){', tuned on validation shots' if setting['tune'] else ''}"
        )
        for seed in seeds:
            split = _draw_split(data, k, int(seed), setting["tune"])
            for method, template in pipelines.items():
                result = _run_method(method, template, data, split, setting, notes, k)
                rows.append(
                    {
                        "method": method,
                        "label": FEWSHOT_METHODS[method],
                        "shots": k,
                        "seed": int(seed),
                        **result,
                    }
                )
    return rows, notes


def _check_data(X, y, X_test, y_test, X_val, y_val, support_views):
    """Validated arrays of the pools; the errors name what does not fit."""
    X = check_array(X, dtype=[np.float32, np.float64], input_name="X")
    y = column_or_1d(np.asarray(y), warn=False)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels.")
    data = {"X": X, "y": y, "classes": np.unique(y), "views": None}
    for name, (A, b) in {"test": (X_test, y_test), "val": (X_val, y_val)}.items():
        if (A is None) != (b is None):
            raise ValueError(f"X_{name} and y_{name} go together: pass both or neither.")
        if A is None:
            data[f"X_{name}"] = data[f"y_{name}"] = None
            continue
        A = check_array(A, dtype=[np.float32, np.float64], input_name=f"X_{name}")
        b = column_or_1d(np.asarray(b), warn=False)
        if A.shape[1] != X.shape[1]:
            raise ValueError(
                f"X_{name} has {A.shape[1]} features but X has {X.shape[1]}: "
                "both must be embeddings of the same model."
            )
        if len(b) != len(A):
            raise ValueError(f"X_{name} has {len(A)} rows but y_{name} has {len(b)} labels.")
        unknown = np.setdiff1d(b, data["classes"])
        if unknown.size:
            raise ValueError(f"y_{name} has classes absent from y: {unknown[:5].tolist()}.")
        data[f"X_{name}"], data[f"y_{name}"] = A, b
    if support_views is not None:
        views = np.asarray(support_views, dtype=X.dtype)
        if views.ndim != 3 or views.shape[1:] != X.shape:
            raise ValueError(
                f"support_views must have shape (n_views, {X.shape[0]}, "
                f"{X.shape[1]}) (views of the rows of X); got {views.shape}."
            )
        data["views"] = views
    return data


def _method_pipelines(methods, text_weights, pca_text_embeddings, has_views):
    """{key: unfitted pipeline} of the methods that can run, {key: reason} of the others."""
    pipelines, skipped = {}, {}
    for method in methods:
        if REGISTRY[method].views and not has_views:
            skipped[method] = "needs augmented views of the support (support_views)"
            continue
        pipe = REGISTRY[method].pipeline(text_weights, pca_text_embeddings)
        if isinstance(pipe, str):
            skipped[method] = pipe
        else:
            pipelines[method] = pipe
    return pipelines, skipped


def _class_counts(y, classes):
    return np.array([np.sum(y == c) for c in classes])


def _usable_shots(shots, data, tune):
    """The shot counts with a test row for every class (a warning for each other one).

    A usable count whose validation shots do not fit is an error naming the class.
    """
    counts = _class_counts(data["y"], data["classes"])
    has_test = data["X_test"] is not None
    limit = counts.min() if has_test else counts.min() - 1
    usable = []
    for k in shots:
        k = int(k)
        if k < 1 or k > limit:
            bound = "smallest class" if has_test else "smallest class - 1"
            warnings.warn(
                f"shots={k} skipped: the smallest class has {counts.min()} rows, so "
                f"k must be in [1, {bound}].",
                UserWarning,
                stacklevel=3,
            )
            continue
        if tune:
            _check_validation_room(k, counts, data)
        usable.append(k)
    return usable


def _check_validation_room(k, counts, data):
    v = validation_shots(k)
    if data["y_val"] is not None:
        room, where = _class_counts(data["y_val"], data["classes"]), "in the validation pool"
        need = np.full(len(counts), v)
    else:
        room, where = counts, "in the training pool"
        need = k + v + (0 if data["X_test"] is not None else 1)
    short = np.flatnonzero(room < need)
    if short.size:
        c = short[0]
        label = data["classes"][c]
        label = label.item() if isinstance(label, np.generic) else label
        raise ValueError(
            f"shots={k}: class {label!r} has {room[c]} rows {where}, too few for "
            f"{'' if data['y_val'] is not None else f'{k} support + '}{v} validation shot(s)"
            f"{' + 1 test row' if data['X_test'] is None and data['y_val'] is None else ''}. "
            "Use fewer shots, pass a validation pool (X_val, y_val), or tune=False "
            "(--no-tune on the command line)."
        )


def _draw_split(data, k, seed, tune):
    """Support, validation and test row indices of one (shots, seed)."""
    y = data["y"]
    support, rest = (
        next(FewShotSplit(k, n_splits=1, random_state=seed).split(None, y))
        if data["X_test"] is None
        else _support_of_pool(y, k, seed)
    )
    val = np.array([], dtype=int)
    if tune:
        rng = np.random.default_rng([seed, k, 4])  # apart from the support's generator
        if data["y_val"] is not None:
            val = _draw_per_class(data["y_val"], data["classes"], validation_shots(k), rng)
        else:
            val = rest[_draw_per_class(y[rest], data["classes"], validation_shots(k), rng)]
            rest = np.setdiff1d(rest, val)
    test = rest if data["X_test"] is None else None
    return {"support": support, "val": val, "test": test}


def _support_of_pool(y, k, seed):
    """The k-shot support of a pool that needs no test rows (a fixed test split is given)."""
    if k == len(y) // len(np.unique(y)) and np.all(np.unique(y, return_counts=True)[1] == k):
        return np.arange(len(y)), np.array([], dtype=int)  # every row is a shot
    return next(FewShotSplit(k, n_splits=1, random_state=seed).split(None, y))


def _draw_per_class(y, classes, n, rng):
    """``n`` random positions of each class of ``classes`` in ``y``, sorted."""
    picked = [rng.choice(np.flatnonzero(y == c), n, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


def _run_method(method, template, data, split, setting, notes, k):
    """Choose the parameters on validation, refit on the support, score on the test rows.

    Expected warnings (e.g. LDA's 1-shot collapse) are kept in ``notes`` instead of
    being printed once per split and grid point.
    """
    tic = time.perf_counter()
    X_s, y_s = _support_rows(data, split["support"], REGISTRY[method].views)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grid = REGISTRY[method].grid(template, setting["search"], setting["dataset"])
        if setting["tune"] and grid:
            X_v, y_v = (
                (data["X_val"], data["y_val"])
                if data["y_val"] is not None
                else (data["X"], data["y"])
            )
            # the search's own fit at the chosen values where it made one, else a refit
            chosen, pipe = select_and_fit(
                template, X_s, y_s, X_v[split["val"]], y_v[split["val"]], grid, setting["selection"]
            )
        else:
            defaults = template.get_params()
            chosen = {name: defaults[name] for name in grid}
            pipe = clone(template).set_params(**chosen).fit(X_s, y_s)
        params = {name.split("__", 1)[1]: value for name, value in chosen.items()}
        X_t, y_t = _test_rows(data, split)
        predicted = pipe.predict(X_t)
        seconds = time.perf_counter() - tic
        untuned = {}
        if setting.get("compare_untuned"):  # the defaults, on the same support and test rows
            untuned["acc1_untuned"] = _untuned_accuracy(
                template, grid, chosen, accuracy_score(y_t, predicted), X_s, y_s, X_t, y_t
            )
    for w in caught:
        notes.setdefault(f"{FEWSHOT_METHODS[method]}: {w.message}", k)
    return {
        "acc1": float(accuracy_score(y_t, predicted)),
        "mean_per_class_recall": float(balanced_accuracy_score(y_t, predicted)),
        "n_test": len(y_t),
        "n_val": len(split["val"]),
        "params": params,
        "seconds": seconds,
        **untuned,
    }


def _untuned_accuracy(template, grid, chosen, tuned, X_s, y_s, X_t, y_t):
    """Test accuracy at the default hyper-parameters (NaN for a method without a grid).

    When the search chose the defaults, the tuned fit is the untuned one: ``tuned``.
    """
    if not grid:
        return np.nan
    defaults = template.get_params()
    if all(defaults[name] == value for name, value in chosen.items()):
        return tuned
    return float(accuracy_score(y_t, clone(template).fit(X_s, y_s).predict(X_t)))


def _support_rows(data, support, views):
    if not views:
        return data["X"][support], data["y"][support]
    V = data["views"][:, support]  # (n_views, n_support, d): every view a row
    return V.reshape(-1, V.shape[-1]), np.tile(data["y"][support], V.shape[0])


def _test_rows(data, split):
    if data["X_test"] is not None:
        return data["X_test"], data["y_test"]
    return data["X"][split["test"]], data["y"][split["test"]]


def summarize_fewshot(runs):
    """Mean, standard deviation and 95 % interval over seeds of each (method, shots).

    Parameters
    ----------
    runs : pandas.DataFrame
        As returned by :func:`run_fewshot_study` (extra grouping columns such as
        ``labeling`` are kept).

    Returns
    -------
    summary : pandas.DataFrame
        One row per group: ``acc1``, ``acc1_std`` (sample std, 0 for one seed),
        ``acc1_ci_low`` / ``acc1_ci_high`` (Student-t 95 % interval over seeds, NaN for
        one seed), ``mean_per_class_recall``, ``mean_per_class_recall_std``, ``n_seeds``.

    Examples
    --------
    >>> import pandas as pd
    >>> from skvlm.studies import summarize_fewshot
    >>> runs = pd.DataFrame({"method": ["a", "a"], "label": ["A", "A"], "shots": [1, 1],
    ...                      "seed": [0, 1], "acc1": [0.5, 0.7],
    ...                      "mean_per_class_recall": [0.5, 0.7], "n_test": [10, 10]})
    >>> summarize_fewshot(runs)[["method", "shots", "acc1", "n_seeds"]].round(3).to_dict("records")
    [{'method': 'a', 'shots': 1, 'acc1': 0.6, 'n_seeds': 2}]
    """
    keys = [c for c in ("labeling", "method", "label", "shots") if c in runs.columns]
    grouped = runs.groupby(keys, sort=False)
    out = grouped[["acc1", "mean_per_class_recall"]].mean()
    std = grouped[["acc1", "mean_per_class_recall"]].std().fillna(0.0)
    out["acc1_std"] = std["acc1"]
    intervals = grouped["acc1"].apply(lambda v: t_interval(v.to_numpy())[1] or (np.nan, np.nan))
    out["acc1_ci_low"] = [iv[0] for iv in intervals]
    out["acc1_ci_high"] = [iv[1] for iv in intervals]
    out["mean_per_class_recall_std"] = std["mean_per_class_recall"]
    out["n_seeds"] = grouped["seed"].nunique()
    return out.reset_index()[
        keys
        + [
            "acc1",
            "acc1_std",
            "acc1_ci_low",
            "acc1_ci_high",
            "mean_per_class_recall",
            "mean_per_class_recall_std",
            "n_seeds",
        ]
    ]
