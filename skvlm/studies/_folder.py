"""``python -m skvlm fewshot | retrieval``: a study on an image folder, with any open_clip model."""

import time
from pathlib import Path

import numpy as np

from .. import __version__
from .._text import class_text_embeddings, resolve_class_names, resolve_templates
from ._common import check_methods, logger, progress_to_stderr
from ._fewshot import run_fewshot_study, summarize_fewshot
from ._findings import fewshot_summary_dict, findings, retrieval_summary_dict
from ._methods import DEFAULT_FEWSHOT, FEWSHOT_METHODS, REGISTRY, RETRIEVAL_METHODS
from ._report import write_report
from ._retrieval import run_retrieval_study

_LABELING = "classes"


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
        Progress lines on stderr (always logged to the ``"skvlm.studies"`` logger).

    Returns
    -------
    summary : dict
        What ``summary.json`` holds.
    """
    if study not in ("fewshot", "retrieval"):
        raise ValueError(f"study must be 'fewshot' or 'retrieval', got {study!r}.")
    known = FEWSHOT_METHODS if study == "fewshot" else RETRIEVAL_METHODS
    methods = check_methods(methods, known, DEFAULT_FEWSHOT if study == "fewshot" else tuple(known))
    out = Path(out)
    with progress_to_stderr(verbose):
        start = time.perf_counter()
        data_rows = _encode_folder(data, model, pretrained, device, cache, batch_size, on_error,
                                   verbose)
        out.mkdir(parents=True, exist_ok=True)
        config = {"study": study, "data": str(data), "n_images": len(data_rows["labels"]),
                  "n_classes": len(data_rows["names"]), "model": model,
                  "pretrained": str(pretrained), "methods": methods}
        pca = {"names": pca_class_names, "templates": templates}
        if study == "fewshot":
            result = _folder_fewshot(data_rows, methods, shots, seeds, templates, pca, verbose)
            config.update(shots=list(shots), seeds=list(seeds), templates=templates)
        else:
            result = _folder_retrieval(data_rows, methods, n_queries, random_state, pca, verbose)
            config.update(n_queries=n_queries, seed=random_state)
        summary = _folder_summary(study, data, model, pretrained, config, result,
                                  data_rows["unreadable"])
        summary["elapsed_s"] = time.perf_counter() - start
        write_report(out, summary, result.get("runs"), result.get("summary"),
                     result.get("retrieval"), None, None)
    return summary


def _encode_folder(data, model, pretrained, device, cache, batch_size, on_error, verbose):
    """The folder's image embeddings, labels, class names, encoder and unreadable files."""
    from ..datasets import load_image_folder  # pandas: imported when a study runs
    from ..encoders import CLIPEncoder

    dataset = load_image_folder(data)
    labels = np.asarray(dataset.labels)
    names = [str(n).replace("_", " ") for n in dataset.target_names]
    encoder = CLIPEncoder(model=model, pretrained=pretrained, device=device, cache=cache,
                          batch_size=batch_size, on_error=on_error, verbose=verbose)
    logger.info(f"encoding {len(dataset.paths)} images of {len(names)} classes with {model}")
    images, kept = encoder.encode_images(dataset.paths, return_indices=True)
    unreadable = [str(dataset.paths[i]) for i in sorted(set(range(len(labels))) - set(kept))]
    # rows and labels stay paired when images were skipped
    return {"images": images, "labels": labels[kept], "names": names, "encoder": encoder,
            "unreadable": unreadable}


def _pca_rows(data_rows, pca, default_names, default_templates):
    """The text rows PCA← projects onto: ``pca["names"]`` or the study's default."""
    spec = default_names if pca["names"] is None else pca["names"]
    if isinstance(spec, str) and spec == "labels":
        names = data_rows["names"]
    else:
        names = resolve_class_names(spec)
    tmpl = default_templates if pca["names"] is None else pca["templates"]
    return class_text_embeddings(data_rows["encoder"].encode_text, names, resolve_templates(tmpl))


def _folder_fewshot(data_rows, methods, shots, seeds, templates, pca, verbose):
    W = pca_text = None
    if any(REGISTRY[m].uses_text for m in methods):
        W = class_text_embeddings(data_rows["encoder"].encode_text, data_rows["names"],
                                  resolve_templates(templates))
        pca_text = W if pca["names"] is None else _pca_rows(data_rows, pca, "labels", templates)
    runs = run_fewshot_study(data_rows["images"], data_rows["labels"], text_weights=W,
                             pca_text_embeddings=pca_text, methods=methods, shots=shots,
                             seeds=seeds, verbose=verbose)
    if runs.empty:
        raise RuntimeError(f"No few-shot result: {runs.attrs['skipped'] or 'no usable shots'}")
    skipped = {f"few-shot {k}": v for k, v in runs.attrs["skipped"].items()}
    runs.insert(0, "labeling", _LABELING)
    return {"runs": runs, "summary": summarize_fewshot(runs), "skipped": skipped,
            "notes": list(runs.attrs["warnings"])}


def _folder_retrieval(data_rows, methods, n_queries, random_state, pca, verbose):
    pca_text = _pca_rows(data_rows, pca, "imagenet", None) if "pca" in methods else None
    results = run_retrieval_study(
        data_rows["images"], data_rows["labels"], pca_text_embeddings=pca_text,
        encoder=data_rows["encoder"] if "inversion" in methods else None, methods=methods,
        n_queries=n_queries, random_state=random_state, verbose=verbose)
    if results.empty:
        raise RuntimeError(f"No retrieval result: {results.attrs['skipped']}")
    skipped = {f"retrieval {k}": v for k, v in results.attrs["skipped"].items()}
    results.insert(0, "labeling", _LABELING)
    return {"retrieval": results, "skipped": skipped, "notes": []}


def _folder_summary(study, data, model, pretrained, config, result, unreadable):
    runs, retrieval = result.get("runs"), result.get("retrieval")
    notes = result["notes"]
    if unreadable:
        notes = [(f"{len(unreadable)} unreadable images were left out "
                 "(listed under 'unreadable' in summary.json).")] + notes
    return {
        "title": f"skvlm {study} report",
        "description": f"`python -m skvlm {study}` on `{data}` with `{model}` (`{pretrained}`).",
        "skvlm_version": __version__,
        "elapsed_s": None,
        "config": config,
        "skipped": result["skipped"],
        "fewshot": fewshot_summary_dict(result["summary"], runs) if runs is not None else {},
        "retrieval": retrieval_summary_dict(retrieval) if retrieval is not None else {},
        "findings": findings(result.get("summary"), retrieval, None,
                             expectations=((_LABELING, 1),)),
        "notes": notes,
        "unreadable": unreadable,
    }
