"""The ready-made few-shot and retrieval studies of the seed papers, and the demo report.

Every study works on embeddings: the images (and texts) are encoded once, then each
method is a scikit-learn ``Pipeline`` fitted on the embedding arrays, so a sweep over
methods, shots and seeds never runs the model twice. ``run_demo`` does it all on the
shipped tiny models and ``make_scenes``; ``run_folder_study`` on an image folder with
any open_clip model. Both write the same report folder: ``report.md`` (tables and
figures inline), CSV tables, PNG figures and ``summary.json``.

Hyper-parameters of the adapters (Tip-Adapter's and Tip-X's alpha/beta, LDA's alpha)
stay at their defaults here; tune them with an inner ``FewShotSplit`` on the shots
(``GridSearchCV``) when a study needs it.
"""

import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._math import l2_normalize

__all__ = [
    "FEWSHOT_METHODS",
    "RETRIEVAL_METHODS",
    "diagnose_embeddings",
    "run_demo",
    "run_fewshot_study",
    "run_folder_study",
    "run_retrieval_study",
    "summarize_fewshot",
]

#: Few-shot methods: key -> label used in tables and figures.
FEWSHOT_METHODS = {
    "zeroshot": "zero-shot",
    "prototype": "NearestPrototype",
    "prototype_pca": "NearestPrototype + PCA←",
    "lda": "LDA",
    "tip_adapter": "Tip-Adapter",
    "tip_x": "Tip-X",
    "ape": "APE",
}
_DEFAULT_FEWSHOT = ("zeroshot", "prototype", "prototype_pca", "lda", "tip_adapter", "tip_x")

#: Retrieval methods: key -> label. "inversion" is OTI for image queries, OVI for text.
RETRIEVAL_METHODS = {"raw": "raw", "inversion": "OTI / OVI", "pca": "PCA←"}
_TASKS = {"image": "image→image", "text": "text→text"}
_INVERSION_LABEL = {"image": "OTI", "text": "OVI"}


# --------------------------------------------------------------------------- progress


class _Progress:
    """Timestamped progress lines on stderr (silent when ``verbose`` is 0)."""

    def __init__(self, verbose):
        self.verbose = verbose
        self.start = time.perf_counter()

    @classmethod
    def of(cls, verbose):
        """A caller's progress (so nested studies share its clock), or a new one."""
        return verbose if isinstance(verbose, cls) else cls(verbose)

    def __call__(self, message):
        if self.verbose:
            print(f"[{self.elapsed():6.1f} s] {message}", file=sys.stderr, flush=True)

    def elapsed(self):
        return time.perf_counter() - self.start


def _pandas():
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "skvlm's studies write pandas tables; install the extra: pip install 'skvlm[pandas]'"
        ) from exc
    return pandas


# --------------------------------------------------------------------------- few-shot


def _method_pipeline(method, text_weights, pca_text_embeddings):
    """The pipeline of one few-shot method, or a string saying why it cannot run."""
    from sklearn.pipeline import Pipeline

    try:
        from . import classifiers
    except ImportError as exc:  # the classifiers package is optional while it lands
        return f"skvlm.classifiers is not available ({exc})"
    needs_text = {"zeroshot": "ZeroShotClassifier", "tip_x": "TipXClassifier", "ape": "APEClassifier"}
    uses_text = {"lda": "LDAClassifier", "tip_adapter": "TipAdapterClassifier", **needs_text}
    if method == "prototype":
        name = "NearestPrototype"
    elif method == "prototype_pca":
        name = "NearestPrototype"
        if pca_text_embeddings is None:
            return "no class-name text embeddings for PCA←"
    else:
        name = uses_text[method]
    cls = getattr(classifiers, name, None)
    if cls is None:
        return f"skvlm.classifiers.{name} is not available"
    if method in needs_text and text_weights is None:
        return "needs class-name text weights"
    if method in uses_text:
        estimator = cls(text_weights=text_weights) if text_weights is not None else cls()
    else:
        estimator = cls()
    steps = []
    if method == "prototype_pca":
        from .projection import ClassSubspaceProjector

        steps.append(("pca", ClassSubspaceProjector(text_embeddings=pca_text_embeddings)))
    steps.append(("clf", estimator))
    return Pipeline(steps)


def _check_methods(methods, known, default):
    methods = list(default if methods is None else methods)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; choose from {list(known)}.")
    if not methods:
        raise ValueError("methods is empty; choose at least one of " f"{list(known)}.")
    return methods


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
        Print a line per shot count.

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
    pd = _pandas()
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.utils import check_array
    from sklearn.utils.validation import column_or_1d

    from .model_selection import FewShotSplit

    X = check_array(X, dtype=[np.float32, np.float64], input_name="X")
    y = column_or_1d(np.asarray(y), warn=False)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels.")
    methods = _check_methods(methods, FEWSHOT_METHODS, _DEFAULT_FEWSHOT)
    _, counts = np.unique(y, return_counts=True)
    progress = _Progress.of(verbose)
    pipelines, skipped = {}, {}
    for method in methods:
        pipe = _method_pipeline(method, text_weights, pca_text_embeddings)
        if isinstance(pipe, str):
            skipped[method] = pipe
        else:
            pipelines[method] = pipe
    rows, notes = [], {}
    for k in shots:
        k = int(k)
        if k < 1 or k >= counts.min():
            warnings.warn(
                f"shots={k} skipped: the smallest class has {counts.min()} rows, so "
                "k must be in [1, smallest class - 1].",
                UserWarning,
                stacklevel=2,
            )
            continue
        progress(f"few-shot: {k} shot(s) x {len(seeds)} seed(s) x {len(pipelines)} method(s)")
        for seed in seeds:
            train, test = next(FewShotSplit(k, n_splits=1, random_state=int(seed)).split(X, y))
            for method, template in pipelines.items():
                # Expected warnings (e.g. LDA's 1-shot collapse) are kept as notes
                # instead of being printed once per split.
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    pipe = clone(template).fit(X[train], y[train])
                    predicted = pipe.predict(X[test])
                for w in caught:
                    notes.setdefault(f"{FEWSHOT_METHODS[method]}: {w.message}", k)
                rows.append(
                    {
                        "method": method,
                        "label": FEWSHOT_METHODS[method],
                        "shots": k,
                        "seed": int(seed),
                        "acc1": float(accuracy_score(y[test], predicted)),
                        "mean_per_class_recall": float(balanced_accuracy_score(y[test], predicted)),
                        "n_test": int(len(test)),
                    }
                )
    columns = ["method", "label", "shots", "seed", "acc1", "mean_per_class_recall", "n_test"]
    runs = pd.DataFrame(rows, columns=columns)
    runs.attrs["skipped"] = skipped
    runs.attrs["warnings"] = [f"{message} (first at {k} shots)" for message, k in notes.items()]
    return runs


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


# --------------------------------------------------------------------------- retrieval


def _retrieval_metrics(queries, query_labels, gallery, gallery_labels):
    from .retrieval import map_at_r, mean_average_precision, r_precision

    args = (queries, query_labels, gallery, gallery_labels)
    return {
        "mAP": float(mean_average_precision(*args)),
        "mAP_at_R": float(map_at_r(*args)),
        "R_precision": float(r_precision(*args)),
    }


def _invert(kind, queries, encoder, params, random_state):
    """OTI of image queries / OVI of text queries, with the model of ``encoder``."""
    from . import inversion

    name = "TextualInverter" if kind == "image" else "VisualInverter"
    cls = getattr(inversion, name)
    return cls(encoder=encoder, random_state=random_state, **(params or {})).fit_transform(queries)


def run_retrieval_study(
    image_emb,
    image_labels,
    *,
    text_emb=None,
    text_labels=None,
    pca_text_embeddings=None,
    encoder=None,
    methods=None,
    n_queries=200,
    oti_params=None,
    ovi_params=None,
    random_state=0,
    verbose=0,
):
    """Image→image (and text→text) retrieval mAP of raw, inverted and PCA← features.

    A random ``n_queries`` rows (a local generator seeded by ``random_state``) are the
    queries and all the other rows the gallery; an item is relevant when it has the
    query's label. The methods (seed 002, Tab. 3; Cross the Gap):

    - ``"raw"``: ⟨I, I⟩, the embeddings as they are.
    - ``"inversion"``: ⟨T, I⟩, each image query replaced by its OTI pseudo-text feature
      (:class:`~skvlm.inversion.TextualInverter`); for text queries ⟨I, T⟩ with OVI
      (:class:`~skvlm.inversion.VisualInverter`). The gallery stays raw.
    - ``"pca"``: ⟨I←, I←⟩, queries and gallery projected by
      :class:`~skvlm.projection.ClassSubspaceProjector` on ``pca_text_embeddings``.

    Parameters
    ----------
    image_emb : array-like of shape (n_images, d)
    image_labels : array-like of shape (n_images,)
    text_emb, text_labels : array-like, default=None
        Text embeddings and labels for the text→text task (skipped when None).
    pca_text_embeddings : array-like of shape (m, d), default=None
        Class-name text embeddings for PCA← (``"pca"`` is skipped without them).
    encoder : CLIPEncoder, default=None
        The model the embeddings came from; needed by ``"inversion"`` (skipped
        without it).
    methods : list of str, default=None
        Keys of :data:`RETRIEVAL_METHODS`; None runs all three.
    n_queries : int, default=200
        Queries per task, capped at half the rows.
    oti_params, ovi_params : dict, default=None
        Extra parameters of :class:`~skvlm.inversion.TextualInverter` and
        :class:`~skvlm.inversion.VisualInverter` (``n_steps``, ``batch_size``...).
    random_state : int, default=0
        Seeds the query draw and the inverters.
    verbose : int, default=0

    Returns
    -------
    results : pandas.DataFrame
        One row per (task, method): ``task``, ``method``, ``label``, ``mAP``,
        ``mAP_at_R``, ``R_precision``, ``n_queries``, ``n_gallery``, ``seconds``.
        ``results.attrs["skipped"]`` maps what could not run to the reason.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.studies import run_retrieval_study
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 10)
    >>> X = np.eye(3)[y] + rng.normal(scale=0.1, size=(30, 3))
    >>> res = run_retrieval_study(X, y, methods=["raw"], n_queries=6)
    >>> res[["task", "method", "mAP"]].to_dict("records")
    [{'task': 'image→image', 'method': 'raw', 'mAP': 1.0}]
    """
    pd = _pandas()
    from sklearn.utils import check_array

    methods = _check_methods(methods, RETRIEVAL_METHODS, tuple(RETRIEVAL_METHODS))
    progress = _Progress.of(verbose)
    rng = np.random.default_rng(random_state)
    tasks = [("image", image_emb, image_labels)]
    if text_emb is not None:
        if text_labels is None:
            raise ValueError("text_emb was given without text_labels.")
        tasks.append(("text", text_emb, text_labels))
    rows, skipped = [], {}
    projector = None
    if "pca" in methods and pca_text_embeddings is None:
        skipped["pca"] = "no class-name text embeddings for PCA←"
    if "inversion" in methods and encoder is None:
        skipped["inversion"] = "no encoder (model) to invert with"
    for kind, emb, labels in tasks:
        emb = check_array(emb, dtype=[np.float32, np.float64], input_name=f"{kind}_emb")
        labels = np.asarray(labels)
        if len(labels) != len(emb):
            raise ValueError(f"{kind} embeddings have {len(emb)} rows but {len(labels)} labels.")
        n_q = int(min(n_queries, len(emb) // 2))
        if n_q < 1:
            raise ValueError(f"Too few {kind} rows ({len(emb)}) to draw queries and a gallery.")
        order = rng.permutation(len(emb))
        q_idx, g_idx = np.sort(order[:n_q]), np.sort(order[n_q:])
        queries, q_labels = emb[q_idx], labels[q_idx]
        gallery, g_labels = emb[g_idx], labels[g_idx]
        for method in methods:
            if method in skipped:
                continue
            tic = time.perf_counter()
            label = RETRIEVAL_METHODS[method]
            if method == "raw":
                metrics = _retrieval_metrics(queries, q_labels, gallery, g_labels)
            elif method == "pca":
                if projector is None:
                    from .projection import ClassSubspaceProjector

                    projector = ClassSubspaceProjector(text_embeddings=pca_text_embeddings)
                    projector.fit(emb)
                metrics = _retrieval_metrics(
                    projector.transform(queries), q_labels, projector.transform(gallery), g_labels
                )
            else:
                label = _INVERSION_LABEL[kind]
                progress(f"retrieval: {label} of {n_q} {kind} queries")
                try:
                    params = oti_params if kind == "image" else ovi_params
                    inverted = _invert(kind, queries, encoder, params, random_state)
                except ImportError as exc:
                    skipped[f"inversion ({kind})"] = f"skvlm.inversion is not available ({exc})"
                    continue
                metrics = _retrieval_metrics(inverted, q_labels, gallery, g_labels)
            rows.append(
                {
                    "task": _TASKS[kind],
                    "method": method,
                    "label": label,
                    **metrics,
                    "n_queries": n_q,
                    "n_gallery": len(g_idx),
                    "seconds": time.perf_counter() - tic,
                }
            )
    columns = ["task", "method", "label", "mAP", "mAP_at_R", "R_precision", "n_queries",
               "n_gallery", "seconds"]
    results = pd.DataFrame(rows, columns=columns)
    results.attrs["skipped"] = skipped
    return results


# --------------------------------------------------------------------------- diagnostics


def diagnose_embeddings(
    image_emb,
    text_emb,
    labels,
    *,
    recover=True,
    max_pairs=20000,
    random_state=0,
):
    """The seed papers' geometry indicators for paired image and text embeddings.

    Parameters
    ----------
    image_emb, text_emb : array-like of shape (n, d)
        Row i of each is one image and its caption.
    labels : array-like of shape (n,)
        A class label per image (for the by-class histograms).
    recover : bool, default=True
        Also recover the image-image similarities from the text-image ones (seed 002,
        App. A) and report the largest error; skipped (None) when there are fewer
        than ``d(d+1)/2`` images.
    max_pairs : int, default=20000
        Pairs kept per histogram.
    random_state : int, default=0

    Returns
    -------
    diagnostics : dict
        ``modality_gap``, ``alignment_score``, the mean cosine of each similarity
        distribution (``mean_cos_intra_class``...), ``recovery_max_abs_error`` and
        ``recovery_n_images``; and under ``"distributions"`` the sampled cosines
        themselves (for :func:`skvlm.plotting.plot_similarity_histograms`).

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm.studies import diagnose_embeddings
    >>> images = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    >>> d = diagnose_embeddings(images, images, [0, 1, 0], recover=False)
    >>> round(d["alignment_score"], 6), round(d["modality_gap"], 6)
    (1.0, 0.0)
    """
    from .diagnostics import (
        alignment_score,
        modality_gap,
        recover_intra_similarity,
        similarity_distributions,
    )

    image_emb = np.asarray(image_emb, dtype=np.float64)
    text_emb = np.asarray(text_emb, dtype=np.float64)
    distributions = similarity_distributions(
        image_emb, labels, text_emb, max_pairs=max_pairs, random_state=random_state
    )
    out = {
        "modality_gap": modality_gap(image_emb, text_emb),
        "alignment_score": alignment_score(image_emb, text_emb),
    }
    for key, values in distributions.items():
        out[f"mean_cos_{key}"] = float(np.mean(values)) if values.size else float("nan")
    out["recovery_max_abs_error"] = None
    out["recovery_n_images"] = None
    d = image_emb.shape[1]
    n_needed = d * (d + 1) // 2
    if recover and image_emb.shape[0] >= n_needed + d:
        n_images = min(image_emb.shape[0], n_needed + 4 * d)
        X_I = l2_normalize(image_emb[:n_images])
        X_T = l2_normalize(text_emb[: min(len(text_emb), 4 * d)])
        recovered = recover_intra_similarity(X_T @ X_I.T, rank=d)
        out["recovery_max_abs_error"] = float(np.abs(recovered - X_I @ X_I.T).max())
        out["recovery_n_images"] = int(n_images)
    out["distributions"] = distributions
    return out


# --------------------------------------------------------------------------- reporting


def _fmt(value, percent=True):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fewshot_markdown(summary):
    shots = sorted(summary["shots"].unique())
    header = ["method"] + [f"{k}-shot" for k in shots]
    rows = []
    for label in dict.fromkeys(summary["label"]):
        part = summary[summary["label"] == label].set_index("shots")
        cells = []
        for k in shots:
            if k in part.index:
                r = part.loc[k]
                cells.append(f"{100 * r['acc1']:.1f} ± {100 * r['acc1_std']:.1f}")
            else:
                cells.append("–")
        rows.append([label] + cells)
    return _markdown_table(header, rows)


def _retrieval_pivot(results, metric="mAP"):
    table = results.pivot_table(index="label", columns="task", values=metric, sort=False)
    order = [lab for lab in dict.fromkeys(results["label"]) if lab in table.index]
    return table.loc[order]


def _retrieval_markdown(results):
    header = ["task", "method", "mAP", "mAP@R", "R-precision", "queries", "gallery"]
    rows = [
        [r.task, r.label, _fmt(r.mAP), _fmt(r.mAP_at_R), _fmt(r.R_precision), r.n_queries,
         r.n_gallery]
        for r in results.itertuples()
    ]
    return _markdown_table(header, rows)


def _save_figure(ax, path):
    fig = ax.figure
    fig.savefig(path, dpi=110)
    return path.name


def _plot_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _fewshot_summary_dict(summary, runs):
    """{labeling: {method: {shots: {acc1, acc1_std, acc1_per_seed, ...}}}}."""
    out = {}
    for r in summary.itertuples():
        per_seed = runs[
            (runs["labeling"] == r.labeling) & (runs["method"] == r.method) & (runs["shots"] == r.shots)
        ].sort_values("seed")
        out.setdefault(r.labeling, {}).setdefault(r.method, {})[str(r.shots)] = {
            "acc1": r.acc1,
            "acc1_std": r.acc1_std,
            "acc1_per_seed": per_seed["acc1"].tolist(),
            "mean_per_class_recall": r.mean_per_class_recall,
            "seeds": per_seed["seed"].tolist(),
        }
    return out


def _retrieval_summary_dict(results):
    """{labeling: {task_key: {method: {mAP, mAP_at_R, R_precision, n_queries}}}}."""
    out = {}
    for r in results.itertuples():
        task = "image_to_image" if r.task == _TASKS["image"] else "text_to_text"
        out.setdefault(r.labeling, {}).setdefault(task, {})[r.method] = {
            "mAP": r.mAP,
            "mAP_at_R": r.mAP_at_R,
            "R_precision": r.R_precision,
            "n_queries": r.n_queries,
            "n_gallery": r.n_gallery,
        }
    return out


def _mean_gain(summary, labeling, method, baseline):
    part = summary[summary["labeling"] == labeling].pivot_table(
        index="shots", columns="method", values="acc1"
    )
    if method not in part or baseline not in part:
        return None
    return float((part[method] - part[baseline]).mean())


def _retrieval_gain(results, labeling, task, method, baseline="raw"):
    part = results[(results["labeling"] == labeling) & (results["task"] == task)]
    values = dict(zip(part["method"], part["mAP"]))
    if method not in values or baseline not in values:
        return None
    return float(values[method] - values[baseline])


_TOLERANCE = 0.005  # differences below half a point (or 0.005 in cosine) count as none


def _verdict(gains, expected_sign, tol=_TOLERANCE):
    """Compare measured gains with the claimed sign.

    'holds' / 'does not hold' when every measured gain is at least ``tol`` in the
    claimed / the opposite direction, 'no clear difference' when all are smaller than
    ``tol``, 'mixed' otherwise, 'not measured' when there is no number.
    """
    measured = [g for g in gains if g is not None]
    if not measured:
        return "not measured"
    kinds = {"agree" if g * expected_sign >= tol and g != 0 else
             "disagree" if -g * expected_sign >= tol and g != 0 else "neutral"
             for g in measured}
    if kinds == {"agree"}:
        return "holds"
    if kinds == {"disagree"}:
        return "does not hold"
    if kinds == {"neutral"}:
        return "no clear difference"
    return "mixed"


# Prompt templates for the scene factors, written with words of make_scenes' captions
# (the only vocabulary the tiny models know).
_SCENE_TEMPLATES = {
    "shape": ["a photo of a {}.", "a {}.", "there is a {}.", "this is a {}."],
    "colour": ["a photo of a {} shape.", "a {} object.", "there is a {} shape."],
    "background": ["a photo of a shape on a {} background.", "an object on a {} background."],
}
_OBJECT_TEMPLATES = ["a photo of a {}."]
# Words by which a caption names a background (make_scenes varies the phrasing).
_BACKGROUND_WORDS = {
    "dark": ("dark", "black"),
    "light": ("light", "white"),
    "striped": ("striped", "stripes"),
    "dotted": ("dotted", "dots"),
    "noisy": ("noisy", "noise"),
}

_DEMO_SIZES = {
    False: {"n_scenes": 3000, "n_queries": 200, "oti_steps": 150, "ovi_steps": 300,
            "shots": (1, 2, 4, 8, 16), "seeds": (0, 1, 2), "recover": True},
    True: {"n_scenes": 600, "n_queries": 24, "oti_steps": 20, "ovi_steps": 20,
           "shots": (1, 2, 4, 8, 16), "seeds": (0, 1, 2), "recover": False},
}


def _scene_templates(factor):
    return _SCENE_TEMPLATES.get(factor, ["a photo of a {}."])


def _mentions(caption, factor, value):
    """Whether ``caption`` names ``value`` of ``factor`` (so text→text has a label)."""
    words = set(caption.lower().replace(".", " ").replace(",", " ").split())
    if factor == "background":
        return any(w in words for w in _BACKGROUND_WORDS.get(value, (value,)))
    return all(w in words for w in str(value).lower().split())


def _encode_model(model, images, captions, device, progress):
    """Image and caption embeddings of one model, or (None, reason) if it cannot load."""
    from .encoders import CLIPEncoder

    encoder = CLIPEncoder(model=model, device=device, batch_size=256)
    progress(f"{model}: encoding {len(images)} images and their captions")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image_emb = encoder.encode_images(images)
            caption_emb = encoder.encode_text(captions)
    except (ValueError, OSError, ImportError, RuntimeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    return {"encoder": encoder, "images": image_emb, "captions": caption_emb, "notes": notes}, None


def _zero_shot_quality(encoded, factors, captions):
    """Zero-shot accuracy per factor and paired image↔text recall@k."""
    from ._text import class_text_embeddings
    from .retrieval import recall_at_k

    encoder = encoded["encoder"]
    out = {"zero_shot_acc1": {}, "recall_at_k": {}}
    for factor in ("shape", "colour", "background"):
        if factor not in factors:
            continue
        y = factors[factor].astype(str).to_numpy()
        names, y_idx = np.unique(y, return_inverse=True)
        W = class_text_embeddings(encoder.encode_text, list(names), _scene_templates(factor))
        predicted = np.argmax(encoded["images"] @ W.T, axis=1)
        out["zero_shot_acc1"][factor] = float(np.mean(predicted == y_idx))
    ids = np.arange(len(captions))
    ks = [1, 5, 10]
    i2t = recall_at_k(encoded["images"], ids, encoded["captions"], ids, k=ks)
    t2i = recall_at_k(encoded["captions"], ids, encoded["images"], ids, k=ks)
    out["recall_at_k"] = {
        "image_to_text": {str(k): float(v) for k, v in i2t.items()},
        "text_to_image": {str(k): float(v) for k, v in t2i.items()},
    }
    out["chance_recall_at_1"] = 1.0 / len(captions)
    return out


def run_demo(out, quick=False, models=("skvlm-tiny", "skvlm-tiny-shared"), device="auto",
             random_state=0, verbose=1):
    """Run the seed papers' studies on the shipped tiny models and write a report.

    On ``make_scenes`` (held-out scenes, never seen in training), with the first model
    of ``models``: (a) the few-shot study, shots 1/2/4/8/16 x 3 seeds, methods
    zero-shot / NearestPrototype / NearestPrototype + PCA← / LDA / Tip-Adapter / Tip-X
    (whichever are installed), for two labelings, ``shape`` (the concept the object
    names describe) and ``background`` (one they do not); (b) the retrieval study,
    image→image and text→text mAP for raw features, OTI / OVI and PCA←; and for every
    model (c) the diagnostics: zero-shot accuracy, image↔text recall@k, modality gap,
    alignment score, similarity histograms and the recovery of S_intra from S_inter.

    PCA← projects onto the principal directions of the *object vocabulary*, the 64
    "colour shape" names (the analogue of the ImageNet class names the paper uses),
    with ``n_components = d // 2`` as in the paper.

    Parameters
    ----------
    out : str or path
        Report folder (created): ``report.md``, ``summary.json``, CSVs and PNGs.
    quick : bool, default=False
        Fewer scenes, queries and inversion steps (well under 2 minutes on 2 cores).
    models : sequence of str, default=("skvlm-tiny", "skvlm-tiny-shared")
        The first runs the studies; all get the diagnostics.
    device : str, default="auto"
    random_state : int, default=0
        Seeds the scenes (offset from the training seeds), splits, queries and inverters.
    verbose : int, default=1
        Progress lines on stderr.

    Returns
    -------
    summary : dict
        What ``summary.json`` holds.
    """
    pd = _pandas()

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    progress = _Progress.of(verbose)
    sizes = _DEMO_SIZES[bool(quick)]
    # Scenes drawn from a seed far from those the models were trained on.
    scene_seed = 10_000 + int(random_state)
    progress(f"generating {sizes['n_scenes']} held-out scenes (seed {scene_seed})")
    from .datasets import make_scenes

    scenes = make_scenes(sizes["n_scenes"], random_state=scene_seed)
    images, captions, factors = scenes.images, list(scenes.captions), scenes.factors

    encoded, unavailable = {}, {}
    for model in models:
        result, reason = _encode_model(model, images, captions, device, progress)
        if result is None:
            unavailable[model] = reason
            progress(f"{model}: unavailable ({reason})")
        else:
            encoded[model] = result
    if not encoded:
        raise RuntimeError(f"No model could be loaded: {unavailable}")
    main_model = next(iter(encoded))
    main = encoded[main_model]

    from ._text import class_text_embeddings

    object_names = [f"{c} {s}" for c in scenes.factor_names["colour"]
                    for s in scenes.factor_names["shape"]]
    pca_text = class_text_embeddings(main["encoder"].encode_text, object_names, _OBJECT_TEMPLATES)

    # (a) few-shot
    labelings = [f for f in ("shape", "background") if f in factors]
    fewshot_runs, skipped, study_notes = [], {}, []
    for labeling in labelings:
        y = factors[labeling].astype(str).to_numpy()
        names = list(np.unique(y))
        W = class_text_embeddings(main["encoder"].encode_text, names, _scene_templates(labeling))
        progress(f"few-shot study, labeling '{labeling}' ({len(names)} classes)")
        runs = run_fewshot_study(
            main["images"], y, text_weights=W, pca_text_embeddings=pca_text,
            shots=sizes["shots"], seeds=[random_state + s for s in sizes["seeds"]],
            verbose=progress,
        )
        runs.insert(0, "labeling", labeling)
        fewshot_runs.append(runs)
        skipped.update({f"few-shot {k}": v for k, v in runs.attrs["skipped"].items()})
        study_notes += [f"few-shot ({labeling}) {w}" for w in runs.attrs["warnings"]]
    fewshot_runs = pd.concat(fewshot_runs, ignore_index=True)
    fewshot_summary = summarize_fewshot(fewshot_runs)

    # (b) retrieval
    retrieval = []
    for labeling in labelings:
        y = factors[labeling].astype(str).to_numpy()
        mentions = np.array([_mentions(c, labeling, v) for c, v in zip(captions, y)])
        progress(f"retrieval study, labeling '{labeling}' "
                 f"({mentions.sum()} captions name their {labeling})")
        has_text = mentions.sum() >= 4
        res = run_retrieval_study(
            main["images"], y,
            text_emb=main["captions"][mentions] if has_text else None,
            text_labels=y[mentions] if has_text else None,
            pca_text_embeddings=pca_text, encoder=main["encoder"],
            n_queries=sizes["n_queries"],
            oti_params={"n_steps": sizes["oti_steps"]},
            ovi_params={"n_steps": sizes["ovi_steps"]},
            random_state=random_state, verbose=progress,
        )
        res.insert(0, "labeling", labeling)
        retrieval.append(res)
        skipped.update({f"retrieval {k}": v for k, v in res.attrs["skipped"].items()})
    retrieval = pd.concat(retrieval, ignore_index=True)

    # (c) diagnostics of every model
    diagnostics, distributions = {}, {}
    for model, enc in encoded.items():
        progress(f"{model}: diagnostics")
        labels = factors["shape"].astype(str).to_numpy()
        diag = diagnose_embeddings(enc["images"], enc["captions"], labels,
                                   recover=sizes["recover"], random_state=random_state)
        distributions[model] = diag.pop("distributions")
        diag.update(_zero_shot_quality(enc, factors, captions))
        diag["notes"] = enc["notes"]
        diagnostics[model] = diag

    summary = _demo_summary(
        sizes, quick, models, main_model, unavailable, skipped, fewshot_runs, fewshot_summary,
        retrieval, diagnostics, progress, scene_seed,
    )
    summary["notes"] = study_notes
    _write_report(out, summary, fewshot_runs, fewshot_summary, retrieval, diagnostics,
                  distributions, progress)
    return summary


# --------------------------------------------------------------------------- summary + report


_LABELING_PHRASES = {
    "shape": "the shape, the concept the object names describe",
    "background": "the background, a concept the object names do not describe",
}


def _findings(fewshot_summary, retrieval, diagnostics,
              expectations=(("shape", 1), ("background", -1))):
    """The seed claims, each with the numbers measured here and a verdict.

    ``expectations``: (labeling, expected sign of the PCA← gain) pairs.
    """
    findings = {}
    i2i, t2t = _TASKS["image"], _TASKS["text"]
    for labeling, sign in expectations:
        key = f"pca_{'helps' if sign > 0 else 'hurts'}_on_{labeling}"
        if fewshot_summary is None and retrieval is None:
            break
        fewshot_gain = (_mean_gain(fewshot_summary, labeling, "prototype_pca", "prototype")
                        if fewshot_summary is not None else None)
        retrieval_gain = (_retrieval_gain(retrieval, labeling, i2i, "pca")
                          if retrieval is not None else None)
        findings[key] = {
            "claim": (f"PCA← {'raises' if sign > 0 else 'lowers'} NearestPrototype accuracy and "
                      f"image→image mAP when the labels are "
                      f"{_LABELING_PHRASES.get(labeling, 'the class folders')} (seed 002, "
                      f"{'Tab. 2-3' if sign > 0 else 'the BDD100k ablation'})"),
            "fewshot_acc1_gain": fewshot_gain,
            "image_to_image_mAP_gain": retrieval_gain,
            "verdict": _verdict([fewshot_gain, retrieval_gain], sign),
        }
    if retrieval is not None:
        labelings = list(dict.fromkeys(retrieval["labeling"]))
        oti = {lab: _retrieval_gain(retrieval, lab, i2i, "inversion") for lab in labelings}
        findings["oti_beats_raw_image_retrieval"] = {
            "claim": "OTI query features retrieve images better than raw image features "
                     "(Cross the Gap, Tab. 3 of seed 002)",
            "image_to_image_mAP_gain": oti,
            "verdict": _verdict(list(oti.values()), 1),
        }
        ovi = {lab: _retrieval_gain(retrieval, lab, t2t, "inversion") for lab in labelings}
        if any(v is not None for v in ovi.values()) or (retrieval["task"] == t2t).any():
            findings["ovi_beats_raw_text_retrieval"] = {
                "claim": "OVI query features retrieve texts better than raw text features "
                         "(Cross the Gap)",
                "text_to_text_mAP_gain": ovi,
                "verdict": _verdict(list(ovi.values()), 1),
            }
        pca_vs_oti = {lab: (None if oti[lab] is None else
                            _retrieval_gain(retrieval, lab, i2i, "pca", "inversion"))
                      for lab in labelings}
        findings["pca_beats_oti"] = {
            "claim": "PCA← beats OTI on image→image retrieval (seed 002, Tab. 3)",
            "image_to_image_mAP_gain": pca_vs_oti,
            "verdict": _verdict(list(pca_vs_oti.values()), 1),
        }
    if diagnostics and "skvlm-tiny" in diagnostics and "skvlm-tiny-shared" in diagnostics:
        base, shared = diagnostics["skvlm-tiny"], diagnostics["skvlm-tiny-shared"]
        gain = shared["alignment_score"] - base["alignment_score"]
        findings["shared_model_aligns_better"] = {
            "claim": "the shared-parameter model trained with IMSep has a higher alignment "
                     "score and a smaller modality gap (AlignCLIP, Tab. 1)",
            "alignment_score_gain": gain,
            "modality_gap_reduction": base["modality_gap"] - shared["modality_gap"],
            "verdict": _verdict([gain, base["modality_gap"] - shared["modality_gap"]], 1),
        }
    errors = {m: d.get("recovery_max_abs_error") for m, d in (diagnostics or {}).items()}
    if any(e is not None for e in errors.values()):
        findings["intra_similarity_recoverable"] = {
            "claim": "image-image similarities are determined by image-text similarities "
                     "(seed 002, App. A): recovered to 1e-6",
            "recovery_max_abs_error": errors,
            "verdict": _verdict([None if e is None else 1e-6 - e for e in errors.values()], 1,
                                tol=0.0),
        }
    return findings


def _finding_line(key, finding):
    numbers = []
    for name, value in finding.items():
        if name in ("claim", "verdict"):
            continue
        if isinstance(value, dict):
            parts = [f"{k}: {_signed(v, name)}" for k, v in value.items()]
            numbers.append(f"{name} ({', '.join(parts)})")
        else:
            numbers.append(f"{name} {_signed(value, name)}")
    return [finding["claim"], "; ".join(numbers), f"**{finding['verdict']}**"]


def _signed(value, name):
    if value is None:
        return "–"
    if "error" in name:
        return f"{value:.1e}"
    if "acc1" in name or "mAP" in name:
        return f"{100 * value:+.1f} pts"
    return f"{value:+.3f}"


def _write_json(path, data):
    path.write_text(json.dumps(_jsonable(data), indent=2, ensure_ascii=False) + "\n")


def _two_histograms(distributions, model, path):
    from matplotlib.figure import Figure

    from .plotting import plot_similarity_histograms

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_similarity_histograms(distributions, keys=["intra_class", "inter_class"], ax=left,
                               title=f"{model}: image-image by shape class")
    if "inter_modal" in distributions:
        plot_similarity_histograms(distributions, keys=["intra_modal", "inter_modal"], ax=right,
                                   title=f"{model}: by modality")
    fig.savefig(path, dpi=110)
    return path.name


def _fewshot_figures(out, fewshot_runs):
    from .plotting import plot_fewshot_curves

    names = {}
    for labeling in dict.fromkeys(fewshot_runs["labeling"]):
        runs = fewshot_runs[fewshot_runs["labeling"] == labeling]
        runs = runs.assign(method=runs["label"])
        ax = plot_fewshot_curves(runs, title=f"few-shot accuracy, labels = {labeling}")
        names[labeling] = _save_figure(ax, out / f"fewshot_{labeling}.png")
    return names


def _retrieval_figure(out, retrieval):
    from .plotting import plot_retrieval_table

    table = retrieval.assign(column=retrieval["labeling"] + ":\n" + retrieval["task"],
                             row=retrieval["method"].map(RETRIEVAL_METHODS))
    pivot = table.pivot_table(index="row", columns="column", values="mAP", sort=False)
    pivot = pivot.loc[[RETRIEVAL_METHODS[m] for m in RETRIEVAL_METHODS
                       if RETRIEVAL_METHODS[m] in pivot.index]]
    ax = plot_retrieval_table(pivot, title="retrieval mAP")
    return _save_figure(ax, out / "retrieval_map.png")


def _write_tables(out, fewshot_runs, fewshot_summary, retrieval, diagnostics):
    pd = _pandas()

    written = []
    if fewshot_runs is not None:
        fewshot_runs.to_csv(out / "fewshot_runs.csv", index=False)
        fewshot_summary.to_csv(out / "fewshot_summary.csv", index=False)
        written += ["fewshot_runs.csv", "fewshot_summary.csv"]
    if retrieval is not None:
        retrieval.to_csv(out / "retrieval.csv", index=False)
        written.append("retrieval.csv")
    if diagnostics:
        rows = []
        for model, diag in diagnostics.items():
            row = {"model": model}
            for key, value in diag.items():
                if isinstance(value, dict):
                    for sub, v in value.items():
                        if isinstance(v, dict):
                            row.update({f"{key}.{sub}.{k}": x for k, x in v.items()})
                        else:
                            row[f"{key}.{sub}"] = v
                elif not isinstance(value, list):
                    row[key] = value
            rows.append(row)
        pd.DataFrame(rows).to_csv(out / "models.csv", index=False)
        written.append("models.csv")
    return written


def _report_markdown(summary, fewshot_summary, retrieval, diagnostics, figures):
    cfg = summary["config"]
    lines = [f"# {summary['title']}", ""]
    lines.append(summary["description"])
    lines.append("")
    lines.append(f"Finished in {summary['elapsed_s']:.0f} s. All numbers are measured by this "
                 "run; every value is also in `summary.json`.")
    lines.append("")
    lines.append("Configuration: " + ", ".join(f"{k} = `{v}`" for k, v in cfg.items()))
    lines.append("")
    if summary.get("findings"):
        lines += ["## Findings (as measured)", ""]
        rows = [_finding_line(k, f) for k, f in summary["findings"].items()]
        lines += [_markdown_table(["claim", "measured", "verdict"], rows), ""]
        lines.append("Gains are differences of percentages (pts), averaged over shot counts for "
                     "few-shot accuracy. A verdict is 'holds' when every measured number goes the "
                     "claimed way by at least 0.5 pts (0.005 for cosine scores), 'does not hold' "
                     "when every one goes the other way by that much, 'no clear difference' when "
                     "all are smaller, 'mixed' otherwise." + summary.get("caveat", ""))
        lines.append("")
    if diagnostics:
        lines += ["## Models", ""]
        header = ["model", "zero-shot shape", "colour", "background", "i→t R@1", "t→i R@1",
                  "modality gap", "alignment score"]
        rows = []
        for model, d in diagnostics.items():
            zs = d.get("zero_shot_acc1", {})
            rk = d.get("recall_at_k", {})
            rows.append([
                model, _fmt(zs.get("shape")), _fmt(zs.get("colour")), _fmt(zs.get("background")),
                _fmt(rk.get("image_to_text", {}).get("1")), _fmt(rk.get("text_to_image", {}).get("1")),
                _fmt(d["modality_gap"], percent=False), _fmt(d["alignment_score"], percent=False),
            ])
        lines += [_markdown_table(header, rows), ""]
        chance = next(iter(diagnostics.values())).get("chance_recall_at_1")
        if chance:
            lines.append(f"Accuracies and recalls in %. Chance recall@1 is {100 * chance:.2f}%. "
                         "Modality gap: distance between the L2-normalised image and caption "
                         "centroids; alignment score: mean cosine of matched image-caption pairs.")
            lines.append("")
        for model, d in diagnostics.items():
            for note in d.get("notes", []):
                lines.append(f"- note ({model}): {note}")
        lines.append("")
    if fewshot_summary is not None:
        lines += ["## Few-shot classification", "",
                  "Top-1 accuracy (%) on all non-support rows, mean ± std over seeds.", ""]
        for labeling in dict.fromkeys(fewshot_summary["labeling"]):
            part = fewshot_summary[fewshot_summary["labeling"] == labeling]
            lines += [f"### Labels = {labeling}", "", _fewshot_markdown(part), ""]
            if labeling in figures.get("fewshot", {}):
                lines += [f"![few-shot {labeling}]({figures['fewshot'][labeling]})", ""]
    if retrieval is not None:
        lines += ["## Retrieval", "",
                  "mAP, MAP@R and R-precision (%) of held-out queries against the rest "
                  "(relevant = same label). OTI/OVI invert the queries only (⟨T, I⟩ / ⟨I, T⟩); "
                  "PCA← projects queries and gallery.", ""]
        for labeling in dict.fromkeys(retrieval["labeling"]):
            part = retrieval[retrieval["labeling"] == labeling]
            lines += [f"### Labels = {labeling}", "", _retrieval_markdown(part), ""]
        if figures.get("retrieval"):
            lines += [f"![retrieval mAP]({figures['retrieval']})", ""]
    if diagnostics:
        lines += ["## Similarity diagnostics", ""]
        header = ["model", "same class", "different class", "image-image", "image-text",
                  "S_intra recovery max error"]
        rows = []
        for model, d in diagnostics.items():
            err = d.get("recovery_max_abs_error")
            rows.append([model] + [_fmt(d.get(f"mean_cos_{k}"), percent=False) for k in
                                   ("intra_class", "inter_class", "intra_modal", "inter_modal")]
                        + ["not run" if err is None else f"{err:.1e} ({d['recovery_n_images']} images)"])
        lines += ["Mean cosine similarity of each kind of pair (seed 002, Fig. 2).", "",
                  _markdown_table(header, rows), ""]
        for model, name in figures.get("histograms", {}).items():
            lines += [f"![similarities {model}]({name})", ""]
    if summary.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in summary["notes"]] + [""]
    if summary.get("skipped") or summary.get("unavailable"):
        lines += ["## Not run", ""]
        for what, why in {**summary.get("unavailable", {}), **summary.get("skipped", {})}.items():
            lines.append(f"- {what}: {why}")
        lines.append("")
    lines += ["## Files", ""] + [f"- `{name}`" for name in summary["files"]] + [""]
    return "\n".join(lines)


def _write_report(out, summary, fewshot_runs, fewshot_summary, retrieval, diagnostics,
                  distributions, progress):
    """Write CSVs, PNGs, report.md and summary.json into ``out``."""
    progress(f"writing the report to {out}")
    files = _write_tables(out, fewshot_runs, fewshot_summary, retrieval, diagnostics)
    figures = {}
    if _plot_available():
        if fewshot_runs is not None and len(fewshot_runs):
            figures["fewshot"] = _fewshot_figures(out, fewshot_runs)
        if retrieval is not None and len(retrieval):
            figures["retrieval"] = _retrieval_figure(out, retrieval)
        figures["histograms"] = {
            model: _two_histograms(dist, model, out / f"similarity_{model}.png")
            for model, dist in (distributions or {}).items()
        }
        files += list(figures.get("fewshot", {}).values())
        files += [figures["retrieval"]] if "retrieval" in figures else []
        files += list(figures["histograms"].values())
    else:
        summary.setdefault("skipped", {})["figures"] = (
            "matplotlib is not installed (pip install 'skvlm[plot]')")
    summary["files"] = ["report.md", "summary.json"] + files
    (out / "report.md").write_text(
        _report_markdown(summary, fewshot_summary, retrieval, diagnostics, figures))
    _write_json(out / "summary.json", summary)


def _demo_summary(sizes, quick, models, main_model, unavailable, skipped, fewshot_runs,
                  fewshot_summary, retrieval, diagnostics, progress, scene_seed):
    from . import __version__

    return {
        "title": "skvlm demo report",
        "description": (
            f"`python -m skvlm demo{' --quick' if quick else ''}`: the few-shot and retrieval "
            f"studies of the seed papers on `{main_model}` and {sizes['n_scenes']} held-out "
            "`make_scenes` images, and the geometry diagnostics of every shipped model. PCA← "
            "projects onto the principal directions of the 64 'colour shape' object names "
            "(the analogue of ImageNet class names), keeping d // 2 components."
        ),
        "caveat": (" The tiny models and generated scenes are a toy world: the verdicts "
                   "describe this setting, not CLIP at scale."),
        "skvlm_version": __version__,
        "quick": bool(quick),
        "elapsed_s": progress.elapsed(),
        "config": {
            "study_model": main_model,
            "models": list(models),
            "n_scenes": sizes["n_scenes"],
            "scene_seed": scene_seed,
            "shots": list(sizes["shots"]),
            "seeds": list(sizes["seeds"]),
            "n_queries": sizes["n_queries"],
            "oti_steps": sizes["oti_steps"],
            "ovi_steps": sizes["ovi_steps"],
        },
        "unavailable": unavailable,
        "skipped": skipped,
        "models": diagnostics,
        "fewshot": _fewshot_summary_dict(fewshot_summary, fewshot_runs),
        "retrieval": _retrieval_summary_dict(retrieval),
        "findings": _findings(fewshot_summary, retrieval, diagnostics),
    }


# --------------------------------------------------------------------------- real data


def run_folder_study(
    study,
    data,
    out,
    *,
    model="ViT-B-32",
    pretrained="default",
    shots=(1, 2, 4, 8, 16),
    seeds=(0, 1, 2),
    methods=None,
    templates="openai",
    pca_class_names=None,
    n_queries=200,
    cache=None,
    device="auto",
    batch_size=64,
    random_state=0,
    on_error="raise",
    verbose=1,
):
    """Run the few-shot or the retrieval study on an image folder and write a report.

    This is what ``python -m skvlm fewshot`` and ``python -m skvlm retrieval`` do. The
    images (``root/<class>/<image>``, see :func:`skvlm.datasets.load_image_folder`)
    are encoded once (``cache`` keeps the embeddings on disk for the next run); the
    class names are the folder names with ``_`` read as spaces.

    Parameters
    ----------
    study : {"fewshot", "retrieval"}
    data : str or path
        The image folder.
    out : str or path
        Report folder: ``report.md``, ``summary.json``, CSVs and PNGs.
    model, pretrained : str
        Any open_clip model and tag or local checkpoint (see :class:`~skvlm.CLIPEncoder`).
    shots, seeds : sequence of int
        Few-shot only.
    methods : list of str, default=None
        Keys of :data:`FEWSHOT_METHODS` or :data:`RETRIEVAL_METHODS`.
    templates : str or list of str, default="openai"
        Prompt templates of the class-name text classifier (few-shot).
    pca_class_names : "imagenet", "labels" or list of str, default=None
        The names whose text embeddings PCA← projects onto. None: the dataset's class
        names for few-shot (the seed's few-shot code) and the 1000 ImageNet class
        names, without templates, for retrieval (its retrieval code).
    n_queries : int, default=200
        Retrieval queries (the rest of the images is the gallery).
    cache : None or str, default=None
        Embedding cache directory.
    device : str, default="auto"
    batch_size : int, default=64
    random_state : int, default=0
        Retrieval only: seeds the query draw and OTI.
    on_error : {"raise", "skip"}, default="raise"
        ``"skip"`` leaves unreadable images out of the study (with their labels); they
        are listed under ``unreadable`` in ``summary.json``.
    verbose : int, default=1

    Returns
    -------
    summary : dict
        What ``summary.json`` holds.
    """
    from ._text import class_text_embeddings, resolve_class_names, resolve_templates
    from .datasets import load_image_folder
    from .encoders import CLIPEncoder

    if study not in ("fewshot", "retrieval"):
        raise ValueError(f"study must be 'fewshot' or 'retrieval', got {study!r}.")
    known = FEWSHOT_METHODS if study == "fewshot" else RETRIEVAL_METHODS
    methods = _check_methods(methods, known, _DEFAULT_FEWSHOT if study == "fewshot" else tuple(known))
    out = Path(out)
    progress = _Progress.of(verbose)
    dataset = load_image_folder(data)
    labels = np.asarray(dataset.labels)
    names = [str(n).replace("_", " ") for n in dataset.target_names]
    labeling = "classes"
    encoder = CLIPEncoder(model=model, pretrained=pretrained, device=device, cache=cache,
                          batch_size=batch_size, on_error=on_error, verbose=verbose)
    progress(f"encoding {len(dataset.paths)} images of {len(names)} classes with {model}")
    images, kept = encoder.encode_images(dataset.paths, return_indices=True)
    unreadable = [str(dataset.paths[i]) for i in sorted(set(range(len(labels))) - set(kept))]
    labels = labels[kept]  # rows and labels stay paired when images were skipped

    def pca_rows(default_names, default_templates):
        spec = default_names if pca_class_names is None else pca_class_names
        pca_names = names if (isinstance(spec, str) and spec == "labels") else resolve_class_names(spec)
        tmpl = default_templates if pca_class_names is None else templates
        return class_text_embeddings(encoder.encode_text, pca_names, resolve_templates(tmpl))

    out.mkdir(parents=True, exist_ok=True)
    fewshot_runs = fewshot_summary = retrieval = None
    skipped, study_notes = {}, []
    config = {"study": study, "data": str(data), "n_images": len(labels), "n_classes": len(names),
              "model": model, "pretrained": str(pretrained), "methods": methods}
    if study == "fewshot":
        needs_text = {"zeroshot", "lda", "tip_adapter", "tip_x", "ape", "prototype_pca"}
        W = pca_text = None
        if needs_text & set(methods):
            W = class_text_embeddings(encoder.encode_text, names, resolve_templates(templates))
            pca_text = W if pca_class_names is None else pca_rows("labels", templates)
        fewshot_runs = run_fewshot_study(images, labels, text_weights=W, pca_text_embeddings=pca_text,
                                         methods=methods, shots=shots, seeds=seeds, verbose=verbose)
        if fewshot_runs.empty:
            raise RuntimeError(f"No few-shot result: {fewshot_runs.attrs['skipped'] or 'no usable shots'}")
        skipped.update({f"few-shot {k}": v for k, v in fewshot_runs.attrs["skipped"].items()})
        fewshot_runs.insert(0, "labeling", labeling)
        fewshot_summary = summarize_fewshot(fewshot_runs)
        study_notes = list(fewshot_runs.attrs["warnings"])
        config.update(shots=list(shots), seeds=list(seeds), templates=templates)
    else:
        pca_text = pca_rows("imagenet", None) if "pca" in methods else None
        retrieval = run_retrieval_study(images, labels, pca_text_embeddings=pca_text,
                                        encoder=encoder if "inversion" in methods else None,
                                        methods=methods, n_queries=n_queries,
                                        random_state=random_state, verbose=verbose)
        if retrieval.empty:
            raise RuntimeError(f"No retrieval result: {retrieval.attrs['skipped']}")
        skipped.update({f"retrieval {k}": v for k, v in retrieval.attrs["skipped"].items()})
        retrieval.insert(0, "labeling", labeling)
        config.update(n_queries=n_queries, seed=random_state)
    from . import __version__

    summary = {
        "title": f"skvlm {study} report",
        "description": f"`python -m skvlm {study}` on `{data}` with `{model}` (`{pretrained}`).",
        "skvlm_version": __version__,
        "elapsed_s": progress.elapsed(),
        "config": config,
        "skipped": skipped,
        "fewshot": _fewshot_summary_dict(fewshot_summary, fewshot_runs) if fewshot_runs is not None else {},
        "retrieval": _retrieval_summary_dict(retrieval) if retrieval is not None else {},
        "findings": _findings(fewshot_summary, retrieval, None, expectations=((labeling, 1),)),
        "notes": study_notes,
        "unreadable": unreadable,
    }
    if unreadable:
        summary["notes"] = [f"{len(unreadable)} unreadable images were left out "
                            "(listed under 'unreadable' in summary.json)."] + study_notes
    _write_report(out, summary, fewshot_runs, fewshot_summary, retrieval, None, None, progress)
    return summary
