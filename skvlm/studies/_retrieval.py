"""The retrieval study: raw, inverted (OTI / OVI) and PCA← features on the same queries."""

import time
import warnings

import numpy as np
from sklearn.utils import check_array

from .. import inversion
from ..projection import ClassSubspaceProjector
from ..retrieval import average_precision_per_query, map_at_r, mean_average_precision, r_precision
from ._common import check_methods, logger, pandas, progress_to_stderr
from ._intervals import bootstrap_interval
from ._methods import RETRIEVAL_METHODS

TASKS = {"image": "image→image", "text": "text→text"}
_INVERSION_LABEL = {"image": "OTI", "text": "OVI"}
_COLUMNS = [
    "task",
    "method",
    "label",
    "mAP",
    "mAP_ci_low",
    "mAP_ci_high",
    "mAP_at_R",
    "R_precision",
    "n_queries",
    "n_gallery",
    "seconds",
    "ap_per_query",
]


def _retrieval_metrics(queries, query_labels, gallery, gallery_labels, random_state):
    args = (queries, query_labels, gallery, gallery_labels)
    ap = average_precision_per_query(*args)
    _, interval = bootstrap_interval(ap, random_state=random_state)
    low, high = interval if interval is not None else (np.nan, np.nan)
    return {
        "mAP": float(mean_average_precision(*args)),
        "mAP_ci_low": low,
        "mAP_ci_high": high,
        "mAP_at_R": float(map_at_r(*args)),
        "R_precision": float(r_precision(*args)),
        "ap_per_query": ap,
    }


def _invert(kind, queries, encoder, params, random_state):
    """OTI of image queries / OVI of text queries, with the model of ``encoder``."""
    cls = inversion.TextualInverter if kind == "image" else inversion.VisualInverter
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
    image_emb, image_labels : array-like of shape (n_images, d) and (n_images,)
        ``image_emb=None`` runs the text→text task alone.
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
        Queries per task, capped at half the rows (with a warning; the ``n_queries``
        column holds the number used).
    oti_params, ovi_params : dict, default=None
        Extra parameters of the inverters (``n_steps``, ``batch_size``...).
    random_state : int, default=0
        Seeds the query draw and the inverters.
    verbose : int, default=0
        Log the inversion steps to stderr (always to the ``"skvlm.studies"`` logger).

    Returns
    -------
    results : pandas.DataFrame
        One row per (task, method): ``task``, ``method``, ``label``, ``mAP``,
        ``mAP_ci_low`` / ``mAP_ci_high`` (bootstrap 95 % interval over the queries),
        ``mAP_at_R``, ``R_precision``, ``n_queries``, ``n_gallery``, ``seconds`` and
        ``ap_per_query`` (each query's average precision, NaN without a relevant item:
        the paired gains between methods are computed from it).
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
    methods = check_methods(methods, RETRIEVAL_METHODS, tuple(RETRIEVAL_METHODS))
    rng = np.random.default_rng(random_state)
    tasks = [] if image_emb is None else [("image", image_emb, image_labels)]
    if text_emb is not None:
        if text_labels is None:
            raise ValueError("text_emb was given without text_labels.")
        tasks.append(("text", text_emb, text_labels))
    skipped = _skipped(methods, pca_text_embeddings, encoder)
    context = {
        "pca_text": pca_text_embeddings,
        "projector": None,
        "encoder": encoder,
        "params": {"image": oti_params, "text": ovi_params},
        "seed": random_state,
    }
    rows = []
    with progress_to_stderr(verbose):
        for kind, emb, labels in tasks:
            split = _query_split(kind, emb, labels, n_queries, rng)
            for method in methods:
                if method not in skipped:
                    rows.append(_run_method(method, kind, split, context))
    results = pandas().DataFrame(rows, columns=_COLUMNS)
    results.attrs["skipped"] = skipped
    return results


def _skipped(methods, pca_text_embeddings, encoder):
    """{method: reason} of the requested methods that lack what they need."""
    skipped = {}
    if "pca" in methods and pca_text_embeddings is None:
        skipped["pca"] = "no class-name text embeddings for PCA←"
    if "inversion" in methods and encoder is None:
        skipped["inversion"] = "no encoder (model) to invert with"
    return skipped


def _query_split(kind, emb, labels, n_queries, rng):
    """Validate one task's rows and draw its queries; the other rows are the gallery."""
    emb = check_array(emb, dtype=[np.float32, np.float64], input_name=f"{kind}_emb")
    labels = np.asarray(labels)
    if len(labels) != len(emb):
        raise ValueError(f"{kind} embeddings have {len(emb)} rows but {len(labels)} labels.")
    n_q = int(min(n_queries, len(emb) // 2))
    if n_q < 1:
        raise ValueError(f"Too few {kind} rows ({len(emb)}) to draw queries and a gallery.")
    if n_q < n_queries:
        warnings.warn(
            f"n_queries={n_queries} is more than half of the {len(emb)} {kind} rows: "
            f"{n_q} queries are drawn, the other {len(emb) - n_q} rows are the gallery.",
            UserWarning,
            stacklevel=3,
        )
    order = rng.permutation(len(emb))
    q_idx, g_idx = np.sort(order[:n_q]), np.sort(order[n_q:])
    return {
        "all": emb,
        "queries": emb[q_idx],
        "q_labels": labels[q_idx],
        "gallery": emb[g_idx],
        "g_labels": labels[g_idx],
    }


def _run_method(method, kind, split, context):
    """One result row: the metrics of ``method`` on one task's queries and gallery."""
    tic = time.perf_counter()
    label = RETRIEVAL_METHODS[method]
    queries, gallery = split["queries"], split["gallery"]
    if method == "pca":
        if context["projector"] is None:  # fitted once, on the first task's rows
            projector = ClassSubspaceProjector(text_embeddings=context["pca_text"])
            context["projector"] = projector.fit(split["all"])
        queries = context["projector"].transform(queries)
        gallery = context["projector"].transform(gallery)
    elif method == "inversion":
        label = _INVERSION_LABEL[kind]
        logger.info(f"retrieval: {label} of {len(queries)} {kind} queries")
        queries = _invert(
            kind, queries, context["encoder"], context["params"][kind], context["seed"]
        )
    metrics = _retrieval_metrics(
        queries, split["q_labels"], gallery, split["g_labels"], context["seed"]
    )
    return {
        "task": TASKS[kind],
        "method": method,
        "label": label,
        **metrics,
        "n_queries": len(queries),
        "n_gallery": len(gallery),
        "seconds": time.perf_counter() - tic,
    }


# --------------------------------------------------------------------------- benchmark

ZEROSHOT_TASK = "zeroshot_retrieval"
RECALL_KS = (1, 5, 10)
_TASK_KEYS = {TASKS["image"]: "image_to_image", TASKS["text"]: "text_to_text"}
_INTRA_METRICS = ("mAP", "mAP_at_R", "R_precision")
FLAT_COLUMNS = [
    "model",
    "pretrained",
    "dataset",
    "task",
    "method",
    "metric",
    "value",
    "n_queries",
    "n_gallery",
]
_CAPTION_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json")


def image_text_recalls(image_emb, text_emb, image_ids, ks=RECALL_KS):
    """Zero-shot image↔text retrieval recalls, named and computed as CLIP_benchmark does.

    ``text_retrieval_recall@k`` (image→text): the fraction of images with at least
    one of their captions among the ``k`` captions closest to them;
    ``image_retrieval_recall@k`` (text→image): the fraction of captions whose image
    is among the ``k`` images closest to them. Cosine similarity.

    Parameters
    ----------
    image_emb : array-like of shape (n_images, d)
    text_emb : array-like of shape (n_texts, d)
    image_ids : array-like of int, shape (n_texts,)
        The row of ``image_emb`` each caption describes.
    ks : sequence of int, default=(1, 5, 10)

    Returns
    -------
    dict
        ``{"image_retrieval_recall@k": ..., "text_retrieval_recall@k": ...}`` per ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> captions = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> image_text_recalls(images, captions, [0, 1, 1], ks=[1])
    {'image_retrieval_recall@1': 0.6666666666666666, 'text_retrieval_recall@1': 1.0}
    """
    from ..retrieval import recall_at_k

    ids = np.asarray(image_ids)
    own = np.arange(len(image_emb))
    ks = [int(k) for k in ks]
    t2i = recall_at_k(text_emb, ids, image_emb, own, k=ks)
    i2t = recall_at_k(image_emb, own, text_emb, ids, k=ks)
    out = {f"image_retrieval_recall@{k}": float(t2i[k]) for k in ks}
    out.update({f"text_retrieval_recall@{k}": float(i2t[k]) for k in ks})
    return out


def _flat(results, model, pretrained, dataset):
    """Long rows (one per metric) of one run_retrieval_study result."""
    rows = []
    for r in results.itertuples():
        for metric in _INTRA_METRICS:
            rows.append(
                {
                    "model": model,
                    "pretrained": str(pretrained),
                    "dataset": dataset,
                    "task": _TASK_KEYS[r.task],
                    "method": r.method,
                    "metric": metric,
                    "value": float(getattr(r, metric)),
                    "n_queries": int(r.n_queries),
                    "n_gallery": int(r.n_gallery),
                }
            )
    return rows


def flat_rows_from_summary(summary, model, pretrained, dataset):
    """Long rows of the ``retrieval`` part of a folder study's summary.json."""
    rows = []
    for tasks in summary.get("retrieval", {}).values():
        for task, methods in tasks.items():
            for method, entry in methods.items():
                rows += [
                    {
                        "model": model,
                        "pretrained": str(pretrained),
                        "dataset": dataset,
                        "task": task,
                        "method": method,
                        "metric": metric,
                        "value": entry[metric],
                        "n_queries": entry["n_queries"],
                        "n_gallery": entry["n_gallery"],
                    }
                    for metric in _INTRA_METRICS
                ]
    return rows


def write_flat_table(out, rows):
    """``results.csv`` and ``results.jsonl``: one row per model × dataset × task × method × metric."""
    import csv
    import json
    from pathlib import Path

    out = Path(out)
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FLAT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "results.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return ["results.csv", "results.jsonl"]


def _load_retrieval_data(path, on_error):
    """A folder (image→image by class) or a captions file (image↔text pairs).

    With ``on_error="skip"`` unreadable images are dropped here, with their labels or
    captions; otherwise the encoder stops at the first one.
    """
    import os

    from ..datasets import load_captioned_pairs, load_image_folder
    from ..datasets._files import drop_unreadable

    check = "skip" if on_error == "skip" else None
    if os.path.isdir(path):
        folder = load_image_folder(path, on_error=check)
        return {
            "kind": "folder",
            "paths": folder.paths,
            "labels": np.asarray(folder.labels),
            "unreadable": sorted(folder.unreadable),
        }
    if not path.lower().endswith(_CAPTION_SUFFIXES):
        raise ValueError(
            f"--data {path!r} is neither an image folder nor a captions file "
            f"({', '.join(_CAPTION_SUFFIXES)})."
        )
    pairs = load_captioned_pairs(path)
    kept, unreadable = drop_unreadable(pairs.unique_paths, check, path)
    index = {old: new for new, old in enumerate(kept)}
    rows = [i for i, image in enumerate(pairs.image_ids) if image in index]
    labels = getattr(pairs, "labels", None)
    return {
        "kind": "pairs",
        "paths": [pairs.unique_paths[i] for i in kept],
        "captions": [pairs.captions[i] for i in rows],
        "image_ids": np.array([index[pairs.image_ids[i]] for i in rows], dtype=np.int64),
        "labels": None if labels is None else _image_labels(labels, pairs.image_ids, kept),
        "unreadable": sorted(unreadable),
    }


def _image_labels(row_labels, image_ids, kept):
    """The label of each kept image: that of its first caption row."""
    first = {}
    for label, image in zip(row_labels, image_ids):
        first.setdefault(int(image), label)
    return np.asarray([first[i] for i in kept])


def _pairs_rows(data, images, texts, names):
    """CLIP_benchmark's recalls as long rows (method "raw": the embeddings as they are)."""
    recalls = image_text_recalls(images, texts, data["image_ids"])
    rows = []
    for metric, value in recalls.items():
        t2i = metric.startswith("image_retrieval")  # text queries against the images
        rows.append(
            {
                **names,
                "task": ZEROSHOT_TASK,
                "method": "raw",
                "metric": metric,
                "value": value,
                "n_queries": len(texts) if t2i else len(images),
                "n_gallery": len(images) if t2i else len(texts),
            }
        )
    return rows


def _benchmark_one(data, encoder, names, methods, n_queries, random_state, verbose):
    """Long rows of every task on one dataset with one model, and what was skipped."""
    from .._text import class_text_embeddings, resolve_class_names, resolve_templates

    images = encoder.encode_images(data["paths"])
    rows, skipped = [], {}
    texts = None
    if data["kind"] == "pairs":
        texts = encoder.encode_text(data["captions"])
        rows += _pairs_rows(data, images, texts, names)
        if data["labels"] is None:
            skipped["image_to_image"] = "the captions file has no label column"
    pca = None
    if "pca" in methods:  # the seed's retrieval code projects onto ImageNet's class names
        pca = class_text_embeddings(
            encoder.encode_text, resolve_class_names("imagenet"), resolve_templates(None)
        )
    with_images = data["kind"] == "folder" or data["labels"] is not None
    results = run_retrieval_study(
        images if with_images else None,
        data["labels"],
        text_emb=texts,
        text_labels=data.get("image_ids"),
        pca_text_embeddings=pca,
        encoder=encoder if "inversion" in methods else None,
        methods=methods,
        n_queries=n_queries,
        random_state=random_state,
        verbose=verbose,
    )
    skipped.update(results.attrs["skipped"])
    return rows + _flat(results, names["model"], names["pretrained"], names["dataset"]), skipped


def run_retrieval_benchmark(
    data,
    models,
    out,
    *,
    pretrained="default",
    methods=None,
    n_queries=200,
    cache=None,
    device="auto",
    batch_size=64,
    random_state=0,
    on_error="raise",
    verbose=1,
):
    """Retrieval on several datasets with several models, as one flat results table.

    What ``python -m skvlm retrieval`` runs for captions files, or for more than one
    ``--data`` or ``--model``. Each dataset is a class-per-folder image folder
    (image→image, relevant = same class) or a captions file read by
    :func:`skvlm.datasets.load_captioned_pairs` (one row per image-caption pair):
    zero-shot image↔text retrieval with CLIP_benchmark's metrics
    (``image_retrieval_recall@k``: text→image, ``text_retrieval_recall@k``:
    image→text, k = 1, 5, 10), text→text retrieval (relevant = captions of the same
    image, as in Cross the Gap) and, when the file has a label column, image→image
    retrieval by label, each with the raw, inversion and PCA← methods.

    Parameters
    ----------
    data : list of str
        Image folders and captions files (``.csv``, ``.tsv``, ``.jsonl``).
    models : list of str
        Model names (:class:`~skvlm.CLIPEncoder`'s ``model``).
    out : str or path
        Folder for ``report.md``, ``summary.json``, ``results.csv`` and ``results.jsonl``.
    pretrained : str or None, default="default"
        The weights of every model (None: random).
    methods : list of str, default=None
        Keys of :data:`RETRIEVAL_METHODS` for the intra-modal tasks; None: all.
    n_queries : int, default=200
        Queries of each intra-modal task (at most half the rows; a warning says so).
    cache, device, batch_size
        As in :class:`~skvlm.CLIPEncoder`.
    random_state : int, default=0
        Seeds the query draw and the inverters.
    on_error : {"raise", "skip"}, default="raise"
        ``"skip"`` leaves unreadable images out with their labels or captions.
    verbose : int, default=1

    Returns
    -------
    summary : dict
        What ``summary.json`` holds: ``config``, ``results``
        (model → dataset → task → method → metric → value), ``skipped``, ``unreadable``,
        ``files``, ``elapsed_s``.
    """
    from pathlib import Path

    from ..encoders import CLIPEncoder

    methods = check_methods(methods, RETRIEVAL_METHODS, tuple(RETRIEVAL_METHODS))
    start = time.perf_counter()
    with progress_to_stderr(verbose):
        datasets = {str(path): _load_retrieval_data(str(path), on_error) for path in data}
        rows, skipped = [], {}
        for model in models:
            encoder = CLIPEncoder(
                model=model,
                pretrained=pretrained,
                device=device,
                cache=cache,
                batch_size=batch_size,
                verbose=verbose,
            )
            for name, dataset in datasets.items():
                logger.info(f"retrieval benchmark: {model} on {name}")
                names = {"model": model, "pretrained": str(pretrained), "dataset": name}
                found, why = _benchmark_one(
                    dataset, encoder, names, methods, n_queries, random_state, verbose
                )
                rows += found
                skipped.update({f"{model} / {name} / {k}": v for k, v in why.items()})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "title": "skvlm retrieval benchmark",
        "config": {
            "data": list(datasets),
            "models": list(models),
            "pretrained": str(pretrained),
            "methods": methods,
            "n_queries": n_queries,
            "seed": random_state,
            "recall_k": list(RECALL_KS),
        },
        "results": _nested(rows),
        "skipped": skipped,
        "unreadable": {name: d["unreadable"] for name, d in datasets.items() if d["unreadable"]},
        "files": ["report.md", "summary.json"] + write_flat_table(out, rows),
        "elapsed_s": time.perf_counter() - start,
    }
    (out / "report.md").write_text(_benchmark_markdown(summary, rows), encoding="utf-8")
    import json

    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return summary


def _nested(rows):
    nested = {}
    for row in rows:
        node = nested.setdefault(row["model"], {}).setdefault(row["dataset"], {})
        node.setdefault(row["task"], {}).setdefault(row["method"], {})[row["metric"]] = row["value"]
    return nested


def _benchmark_markdown(summary, rows):
    """One table per dataset and task: a row per model and method, a column per metric."""
    lines = [
        f"# {summary['title']}",
        "",
        f"Models: {', '.join(summary['config']['models'])} "
        f"(`{summary['config']['pretrained']}`). Values are fractions in [0, 1]; "
        "the same numbers, one per row, are in `results.csv` and `results.jsonl`.",
        "",
    ]
    keys = dict.fromkeys((r["dataset"], r["task"]) for r in rows)
    for dataset, task in keys:
        chosen = [r for r in rows if r["dataset"] == dataset and r["task"] == task]
        metrics = list(dict.fromkeys(r["metric"] for r in chosen))
        lines += [
            f"## `{dataset}`: {task}",
            "",
            "| model | method | " + " | ".join(metrics) + " | queries |",
            "|---|---|" + "---|" * (len(metrics) + 1),
        ]
        for model, method in dict.fromkeys((r["model"], r["method"]) for r in chosen):
            cells = {r["metric"]: r for r in chosen if (r["model"], r["method"]) == (model, method)}
            values = " | ".join(f"{cells[m]['value']:.4f}" if m in cells else "" for m in metrics)
            queries = max(r["n_queries"] for r in cells.values())
            lines.append(f"| {model} | {method} | {values} | {queries} |")
        lines.append("")
    for what, why in summary["skipped"].items():
        lines.append(f"- not run: {what}: {why}")
    for name, files in summary["unreadable"].items():
        lines.append(f"- {len(files)} unreadable images left out of `{name}`")
    return "\n".join(lines) + "\n"
