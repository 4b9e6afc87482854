"""The few-shot study: every method fitted on the same k-shot splits, over shots and seeds."""

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.utils import check_array
from sklearn.utils.validation import column_or_1d

from ..model_selection import FewShotSplit
from ._common import check_methods, logger, pandas, progress_to_stderr
from ._methods import DEFAULT_FEWSHOT, FEWSHOT_METHODS, REGISTRY

_RUN_COLUMNS = ["method", "label", "shots", "seed", "acc1", "mean_per_class_recall", "n_test"]


def run_fewshot_study(
    X,
    y,
    *,
    text_weights=None,
    pca_text_embeddings=None,
    methods=None,
    shots=(1, 2, 4, 8, 16),
    seeds=(0, 1, 2),
    verbose=0,
):
    """k-shot classification of embeddings by several methods, over shots and seeds.

    For each number of shots k and each seed, one :class:`~skvlm.model_selection.FewShotSplit`
    draws k training rows per class and tests on all the other rows; every method is
    fitted on the same split, so methods are compared on identical data.

    Parameters
    ----------
    X : array-like of shape (n_samples, d)
        Image embeddings (encoded once by the caller).
    y : array-like of shape (n_samples,)
        Class labels.
    text_weights : array-like of shape (n_classes, d), default=None
        Class-name text classifier, rows in the order of ``numpy.unique(y)``. Needed by
        ``"zeroshot"``, ``"tip_x"`` and ``"ape"`` (skipped without it) and used by
        ``"lda"`` and ``"tip_adapter"`` (image-only without it).
    pca_text_embeddings : array-like of shape (m, d), default=None
        The text rows whose principal directions PCA← projects onto (class names);
        ``"prototype_pca"`` is skipped without them.
    methods : list of str, default=None
        Keys of :data:`FEWSHOT_METHODS`; None runs zero-shot, NearestPrototype,
        NearestPrototype + PCA←, LDA, Tip-Adapter and Tip-X.
    shots : sequence of int, default=(1, 2, 4, 8, 16)
        Shot counts; a count that leaves some class without a test row is skipped
        with a warning.
    seeds : sequence of int, default=(0, 1, 2)
        One split per seed (``FewShotSplit(k, n_splits=1, random_state=seed)``).
    verbose : int, default=0
        Log a line per shot count to stderr (the lines always go to the
        ``"skvlm.studies"`` logger at level INFO).

    Returns
    -------
    runs : pandas.DataFrame
        One row per (method, shots, seed): ``method``, ``label``, ``shots``, ``seed``,
        ``acc1`` (accuracy), ``mean_per_class_recall`` (balanced accuracy), ``n_test``.
        ``runs.attrs["skipped"]`` maps each method that could not run to the reason;
        ``runs.attrs["warnings"]`` lists the distinct warnings the methods raised.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.studies import run_fewshot_study
    >>> rng = np.random.default_rng(0)
    >>> centres = np.eye(4)[:2] * 3
    >>> y = np.repeat([0, 1], 20)
    >>> X = centres[y] + rng.normal(scale=0.3, size=(40, 4))
    >>> runs = run_fewshot_study(X, y, methods=["prototype"], shots=[1, 2], seeds=[0])
    >>> runs[["method", "shots", "acc1"]].to_dict("records")
    [{'method': 'prototype', 'shots': 1, 'acc1': 1.0}, {'method': 'prototype', 'shots': 2, 'acc1': 1.0}]
    """
    pd = pandas()
    X = check_array(X, dtype=[np.float32, np.float64], input_name="X")
    y = column_or_1d(np.asarray(y), warn=False)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels.")
    methods = check_methods(methods, FEWSHOT_METHODS, DEFAULT_FEWSHOT)
    pipelines, skipped = _method_pipelines(methods, text_weights, pca_text_embeddings)
    rows, notes = [], {}
    with progress_to_stderr(verbose):
        for k in _usable_shots(shots, y):
            logger.info(f"few-shot: {k} shot(s) x {len(seeds)} seed(s) x {len(pipelines)} method(s)")
            for seed in seeds:
                train, test = next(FewShotSplit(k, n_splits=1, random_state=int(seed)).split(X, y))
                for method, template in pipelines.items():
                    scores = _fit_and_score(template, X, y, train, test, notes, method, k)
                    rows.append({"method": method, "label": FEWSHOT_METHODS[method], "shots": k,
                                 "seed": int(seed), **scores, "n_test": len(test)})
    runs = pd.DataFrame(rows, columns=_RUN_COLUMNS)
    runs.attrs["skipped"] = skipped
    runs.attrs["warnings"] = [f"{message} (first at {k} shots)" for message, k in notes.items()]
    return runs


def _method_pipelines(methods, text_weights, pca_text_embeddings):
    """{key: unfitted pipeline} of the methods that can run, {key: reason} of the others."""
    pipelines, skipped = {}, {}
    for method in methods:
        pipe = REGISTRY[method].pipeline(text_weights, pca_text_embeddings)
        if isinstance(pipe, str):
            skipped[method] = pipe
        else:
            pipelines[method] = pipe
    return pipelines, skipped


def _usable_shots(shots, y):
    """The shot counts that leave every class a test row (a warning for each other one)."""
    smallest = np.unique(y, return_counts=True)[1].min()
    usable = []
    for k in shots:
        k = int(k)
        if k < 1 or k >= smallest:
            warnings.warn(
                f"shots={k} skipped: the smallest class has {smallest} rows, so "
                "k must be in [1, smallest class - 1].",
                UserWarning,
                stacklevel=3,
            )
            continue
        usable.append(k)
    return usable


def _fit_and_score(template, X, y, train, test, notes, method, k):
    """Fit a clone on the train rows and score it on the test rows.

    Expected warnings (e.g. LDA's 1-shot collapse) are kept in ``notes`` instead of
    being printed once per split.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predicted = clone(template).fit(X[train], y[train]).predict(X[test])
    for w in caught:
        notes.setdefault(f"{FEWSHOT_METHODS[method]}: {w.message}", k)
    return {
        "acc1": float(accuracy_score(y[test], predicted)),
        "mean_per_class_recall": float(balanced_accuracy_score(y[test], predicted)),
    }


def summarize_fewshot(runs):
    """Mean and standard deviation over seeds of each (method, shots) of a few-shot study.

    Parameters
    ----------
    runs : pandas.DataFrame
        As returned by :func:`run_fewshot_study` (extra grouping columns such as
        ``labeling`` are kept).

    Returns
    -------
    summary : pandas.DataFrame
        One row per group: ``acc1``, ``acc1_std`` (sample std, 0 for one seed),
        ``mean_per_class_recall``, ``mean_per_class_recall_std``, ``n_seeds``.

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
    out["mean_per_class_recall_std"] = std["mean_per_class_recall"]
    out["n_seeds"] = grouped["seed"].nunique()
    return out.reset_index()[keys + ["acc1", "acc1_std", "mean_per_class_recall",
                                     "mean_per_class_recall_std", "n_seeds"]]
