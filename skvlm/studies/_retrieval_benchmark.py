"""``python -m skvlm retrieval``'s benchmark: several datasets and models, one flat table.

Image folders (image→image by class) and captions files (zero-shot image↔text recalls as
CLIP_benchmark computes them, text→text, image→image by label), each task with the
methods of :func:`~skvlm.studies.run_retrieval_study`; ``results.csv`` /
``results.jsonl`` hold one row per model × dataset × task × method × metric.
"""

import json
import time
from pathlib import Path

import numpy as np

from ._common import check_methods, logger, progress_to_stderr
from ._methods import RETRIEVAL_METHODS
from ._retrieval import TASKS, run_retrieval_study

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
    methods = check_methods(methods, RETRIEVAL_METHODS, tuple(RETRIEVAL_METHODS))
    start = time.perf_counter()
    encoding = {"pretrained": pretrained, "device": device, "cache": cache}
    encoding.update(batch_size=batch_size, verbose=verbose)
    with progress_to_stderr(verbose):
        datasets = {str(path): _load_retrieval_data(str(path), on_error) for path in data}
        study = {"methods": methods, "n_queries": n_queries, "random_state": random_state}
        rows, skipped = _benchmark_rows(datasets, models, encoding, study)
    config = {
        "data": list(datasets),
        "models": list(models),
        "pretrained": str(pretrained),
        "methods": methods,
        "n_queries": n_queries,
        "seed": random_state,
        "recall_k": list(RECALL_KS),
    }
    return _write_benchmark(Path(out), config, datasets, rows, skipped, start)


def _benchmark_rows(datasets, models, encoding, study):
    """The long rows of every (model, dataset), and what was skipped."""
    from ..encoders import CLIPEncoder

    rows, skipped = [], {}
    for model in models:
        encoder = CLIPEncoder(model=model, **encoding)
        for name, dataset in datasets.items():
            logger.info(f"retrieval benchmark: {model} on {name}")
            names = {"model": model, "pretrained": str(encoding["pretrained"]), "dataset": name}
            found, why = _benchmark_one(
                dataset,
                encoder,
                names,
                study["methods"],
                study["n_queries"],
                study["random_state"],
                encoding["verbose"],
            )
            rows += found
            skipped.update({f"{model} / {name} / {k}": v for k, v in why.items()})
    return rows, skipped


def _write_benchmark(out, config, datasets, rows, skipped, start):
    """report.md, summary.json and the flat tables; the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "title": "skvlm retrieval benchmark",
        "config": config,
        "results": _nested(rows),
        "published": published_beside(rows),
        "skipped": skipped,
        "unreadable": {name: d["unreadable"] for name, d in datasets.items() if d["unreadable"]},
        "files": ["report.md", "summary.json"] + write_flat_table(out, rows),
        "elapsed_s": time.perf_counter() - start,
    }
    (out / "report.md").write_text(_benchmark_markdown(summary, rows), encoding="utf-8")
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return summary


#: The flat table's intra-modal tasks as the published table names them.
_PUBLISHED_TASKS = {"image_to_image": "image", "text_to_text": "text"}


def published_dataset_name(path):
    """The name a dataset's published numbers go by: its folder's (or file's stem).

    :func:`skvlm._published.compare_with_published` ignores case, ``-``, ``_`` and
    spaces, so ``.../oxford_pets/`` matches ``OxfordPets``.

    Examples
    --------
    >>> published_dataset_name("/data/oxford_pets/"), published_dataset_name("x/DTD.csv")
    ('oxford_pets', 'DTD')
    """
    path = Path(str(path).rstrip("/\\"))
    return path.stem if path.suffix.lower() in _CAPTION_SUFFIXES else path.name


def published_beside(rows):
    """The measured mAPs that a published number matches, each beside it.

    Parameters
    ----------
    rows : list of dict
        Long rows (``FLAT_COLUMNS``); only the image→image and text→text ``mAP`` rows
        can match (method, model, pretrained tag and the dataset's folder name, as
        :func:`published_dataset_name`; random weights never match).

    Returns
    -------
    list of dict
        ``model``, ``dataset`` (as given), ``published_as`` (the published table's
        name), ``task``, ``method``, ``mAP``, ``published``, ``difference`` (measured
        minus published, fractions) and ``source``; empty when nothing matches.
    """
    import warnings

    import pandas as pd

    from .._published import compare_with_published, published_results

    measured = [r for r in rows if r["metric"] == "mAP" and r["task"] in _PUBLISHED_TASKS]
    if not measured:
        return []
    frame = pd.DataFrame(
        {
            "method": [r["method"] for r in measured],
            "model": [r["model"] for r in measured],
            "pretrained": [
                None if r["pretrained"] == "default" else r["pretrained"] for r in measured
            ],
            "dataset": [published_dataset_name(r["dataset"]) for r in measured],
            "task": [_PUBLISHED_TASKS[r["task"]] for r in measured],
            "mAP": [r["value"] for r in measured],
        }
    )
    with warnings.catch_warnings():  # a folder's name need not be a published dataset's
        warnings.simplefilter("ignore")
        compared = compare_with_published(frame)
    known = {_key(name): name for name in set(published_results()["dataset"])}
    out = []
    for row, match in zip(measured, compared.itertuples()):
        if pd.notna(match.published):
            out.append(
                {
                    "model": row["model"],
                    "dataset": row["dataset"],
                    "published_as": known.get(_key(match.dataset), match.dataset),
                    "task": row["task"],
                    "method": row["method"],
                    "mAP": row["value"],
                    "published": float(match.published),
                    "difference": float(match.difference),
                    "source": match.published_source,
                }
            )
    return out


def published_text(matches):
    """The matches of :func:`published_beside` as aligned lines, mAP in %."""
    lines = ["mAP (%), measured vs published (same model, dataset, task and method):"]
    for m in matches:
        lines.append(
            f"{m['model']:>16} {m['published_as']:>14} {m['task']:>14} {m['method']:>9}  "
            f"measured {100 * m['mAP']:5.1f}  published {100 * m['published']:5.1f}  "
            f"difference {100 * m['difference']:+5.1f}  ({m['source']})"
        )
    return "\n".join(lines)


def _key(name):
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


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
    if summary.get("published"):
        published = published_text(summary["published"])
        lines += ["## Beside the published numbers", "", "```", published, "```", ""]
    for what, why in summary["skipped"].items():
        lines.append(f"- not run: {what}: {why}")
    for name, files in summary["unreadable"].items():
        lines.append(f"- {len(files)} unreadable images left out of `{name}`")
    return "\n".join(lines) + "\n"
