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
# CoOp's prompt for a dataset of its own (load_coop_split with dataset=None).
_FOLDER_TEMPLATE = "a photo of a {}."
# How the report's protocol line states each selection rule (select_params' "selection").
_SELECTION_WORDS = {
    "one_se": ", keeping the defaults unless a combination beat them by more than one "
    "standard error",
    "paired": ", keeping the defaults unless the best combination beat them on the same "
    "validation rows by more than a standard error widened for the grid's size",
}


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
    templates="reference",
    pca_class_names=None,
    n_queries=200,
    cache=None,
    device="auto",
    batch_size=64,
    random_state=0,
    on_error="raise",
    coop=None,
    tune=True,
    search="default",
    selection="best",
    n_views=0,
    verbose=1,
):
    """Run the few-shot or the retrieval study on an image folder and write a report.

    What ``python -m skvlm fewshot | retrieval`` do. The images (``root/<class>/<image>``,
    :func:`skvlm.datasets.load_image_folder`; class names are the folder names with
    ``_`` read as spaces) are encoded once (``cache`` keeps the embeddings on disk).
    With ``coop`` (a ``COOP_DATASETS`` name), ``data`` is a CoOp benchmark root
    (:func:`~skvlm.datasets.load_coop_split`): support from ``train``, validation shots
    from ``val`` (from ``train`` for ImageNet, whose CoOp ``val`` is its test set),
    scored on ``test``, the published numbers (:func:`skvlm.studies.published_results`)
    beside the measured ones.

    Parameters
    ----------
    study : {"fewshot", "retrieval"}
    data : str or path
        The image folder, or with ``coop`` the data root of the CoOp datasets.
    out : str or path
        Report folder: ``report.md``, ``summary.json``, CSVs and PNGs.
    model, pretrained : str
        Any open_clip model and tag or local checkpoint (see :class:`~skvlm.CLIPEncoder`).
    shots, seeds, methods, tune, search, selection
        As in :func:`run_fewshot_study` (``methods`` also takes
        :data:`RETRIEVAL_METHODS` keys).
    templates : "reference", "openai", "simple" or list of str, default="reference"
        Few-shot prompts: ``"reference"`` is the dataset's own (CoOp's per dataset, the
        7 "simple" ones for ImageNet; "a photo of a {}." for a plain folder).
    pca_class_names : "imagenet", "labels" or list of str, default=None
        The names PCA← projects onto. None: the class names (few-shot) or the 1000
        ImageNet names without templates (retrieval), as the seed's code does.
    n_queries, cache, device, batch_size
        Retrieval queries (the rest is the gallery); the :class:`~skvlm.CLIPEncoder`'s.
    random_state : int, default=0
        Retrieval: seeds the query draw and OTI.
    on_error : {"raise", "skip"}, default="raise"
        ``"skip"`` leaves unreadable images out (listed under ``unreadable``).
    n_views : int, default=0
        Few-shot: augmented views per training image for ``"lda_views"`` (10 in GDA's
        reference); added to the default methods when positive.
    verbose : int, default=1
        Progress lines on stderr (always logged to the ``"skvlm.studies"`` logger).

    Returns
    -------
    summary : dict
        What ``summary.json`` holds.
    """
    methods = _folder_methods(study, methods, n_views)
    encoding = dict(model=model, pretrained=pretrained, device=device, cache=cache)
    encoding.update(batch_size=batch_size, on_error=on_error, verbose=verbose)
    setting = dict(shots=shots, seeds=seeds, tune=tune, search=search, n_views=int(n_views))
    setting["selection"] = selection
    setting.update(templates=templates, n_queries=n_queries, random_state=random_state)
    setting.update(coop=coop, pca={"names": pca_class_names, "templates": templates})
    with progress_to_stderr(verbose):
        return _run_folder(study, data, Path(out), methods, encoding, setting)


def _folder_methods(study, methods, n_views):
    """The checked method keys of a study (``lda_views`` joins the default with views)."""
    if study not in ("fewshot", "retrieval"):
        raise ValueError(f"study must be 'fewshot' or 'retrieval', got {study!r}.")
    if study == "retrieval":
        return check_methods(methods, RETRIEVAL_METHODS, tuple(RETRIEVAL_METHODS))
    default = DEFAULT_FEWSHOT + (("lda_views",) if n_views else ())
    return check_methods(methods, FEWSHOT_METHODS, default)


def _run_folder(study, data, out, methods, encoding, setting):
    """Encode, run the study, write the report; the summary."""
    start = time.perf_counter()
    coop = setting["coop"]
    rows = _encode_coop(data, coop, encoding) if coop else _encode_folder(data, encoding)
    if study == "fewshot" and setting["n_views"]:
        rows["views"] = _encode_views(rows, setting["n_views"])
    out.mkdir(parents=True, exist_ok=True)
    run = _folder_fewshot if study == "fewshot" else _folder_retrieval
    result = run(rows, methods, setting, encoding["verbose"])
    model, pretrained = encoding["model"], encoding["pretrained"]
    config = _folder_config(study, data, model, pretrained, methods, rows, setting)
    summary = _folder_summary(study, data, model, pretrained, config, result, rows)
    summary["elapsed_s"] = time.perf_counter() - start
    write_report(
        out, summary, result.get("runs"), result.get("summary"), result.get("retrieval"), None, None
    )
    return summary


def _folder_config(study, data, model, pretrained, methods, rows, setting):
    config = {
        "study": study,
        "data": str(data),
        "n_images": len(rows["labels"]),
        "n_classes": len(rows["names"]),
        "model": model,
        "pretrained": str(pretrained),
        "methods": methods,
    }
    if study == "fewshot":
        config.update(
            shots=list(setting["shots"]),
            seeds=list(setting["seeds"]),
            templates=setting["templates"],
            tune=bool(setting["tune"]),
            search=setting["search"],
            selection=setting["selection"],
            n_views=setting["n_views"],
        )
    else:
        config.update(n_queries=setting["n_queries"], seed=setting["random_state"])
    if rows.get("dataset"):
        config["coop_dataset"] = rows["dataset"]
    return config


def _encoder(encoding):
    from ..encoders import CLIPEncoder

    return CLIPEncoder(
        model=encoding["model"],
        pretrained=encoding["pretrained"],
        device=encoding["device"],
        cache=encoding["cache"],
        batch_size=encoding["batch_size"],
        on_error=encoding["on_error"],
        verbose=encoding["verbose"],
    )


def _encode_paths(encoder, paths, labels):
    """Embeddings of the readable images, their labels and the unreadable paths."""
    images, kept = encoder.encode_images(list(paths), return_indices=True)
    unreadable = [str(paths[i]) for i in sorted(set(range(len(paths))) - set(kept))]
    kept = np.asarray(kept, dtype=int)
    # rows and labels stay paired when images were skipped
    return images, np.asarray(labels)[kept], [paths[i] for i in kept], unreadable


def _encode_folder(data, encoding):
    """The folder's image embeddings, labels, class names, encoder and unreadable files."""
    from ..datasets import load_image_folder  # pandas: imported when a study runs

    dataset = load_image_folder(data)
    names = [str(n).replace("_", " ") for n in dataset.target_names]
    encoder = _encoder(encoding)
    logger.info(
        f"encoding {len(dataset.paths)} images of {len(names)} classes with {encoding['model']}"
    )
    images, labels, paths, unreadable = _encode_paths(encoder, list(dataset.paths), dataset.labels)
    return {
        "images": images,
        "labels": labels,
        "paths": paths,
        "names": names,
        "encoder": encoder,
        "unreadable": unreadable,
        "templates": [_FOLDER_TEMPLATE],
        "notes": [],
    }


def _encode_coop(root, dataset, encoding):
    """CoOp's train pool, validation pool (not for ImageNet) and test split, encoded."""
    from ..datasets import load_coop_split

    split = load_coop_split(root, dataset)
    encoder = _encoder(encoding)
    rows = {
        "names": list(split.target_names),
        "encoder": encoder,
        "unreadable": [],
        "templates": list(split.templates),
        "dataset": split.dataset,
        "notes": [],
    }
    subsets = ["train", "test"] + ([] if split.dataset == "ImageNet" else ["val"])
    for subset in subsets:
        part = split[subset]
        logger.info(
            f"encoding {len(part.paths)} {subset} images of {split.dataset} with "
            f"{encoding['model']}"
        )
        images, labels, paths, unreadable = _encode_paths(encoder, list(part.paths), part.target)
        prefix = "" if subset == "train" else f"{subset}_"
        rows.update({f"{prefix}images": images, f"{prefix}labels": labels})
        rows["paths" if subset == "train" else f"{subset}_paths"] = paths
        rows["unreadable"] += unreadable
    if split.dataset == "ImageNet":
        rows["notes"].append(
            "ImageNet: the validation shots are drawn from train, since "
            "CoOp's ImageNet val is its test set."
        )
    return rows


def _encode_views(rows, n_views):
    """(n_views, n, d) augmented views of the training images, one encoder call per view."""
    from sklearn.base import clone

    logger.info(f"encoding {n_views} augmented views of {len(rows['paths'])} training images")
    views = []
    for view in range(int(n_views)):
        encoder = clone(rows["encoder"]).set_params(
            n_augmentations=1, random_state=view, on_error="raise"
        )
        views.append(encoder.fit_transform(rows["paths"]))
    return np.stack(views)


def _templates(spec, rows):
    """``"reference"``: the dataset's own templates; anything else as resolve_templates."""
    return list(rows["templates"]) if spec == "reference" else resolve_templates(spec)


def _pca_rows(rows, pca, default_names, default_templates):
    """The text rows PCA← projects onto: ``pca["names"]`` or the study's default."""
    spec = default_names if pca["names"] is None else pca["names"]
    if isinstance(spec, str) and spec == "labels":
        names = rows["names"]
    else:
        names = resolve_class_names(spec)
    tmpl = default_templates if pca["names"] is None else pca["templates"]
    return class_text_embeddings(rows["encoder"].encode_text, names, _templates(tmpl, rows))


def _folder_fewshot(rows, methods, setting, verbose):
    templates, pca = setting["templates"], setting["pca"]
    W = pca_text = None
    if any(REGISTRY[m].uses_text for m in methods):
        W = class_text_embeddings(
            rows["encoder"].encode_text, rows["names"], _templates(templates, rows)
        )
        pca_text = W if pca["names"] is None else _pca_rows(rows, pca, "labels", templates)
    runs = run_fewshot_study(
        rows["images"],
        rows["labels"],
        X_test=rows.get("test_images"),
        y_test=rows.get("test_labels"),
        X_val=rows.get("val_images"),
        y_val=rows.get("val_labels"),
        text_weights=W,
        pca_text_embeddings=pca_text,
        support_views=rows.get("views"),
        methods=methods,
        shots=setting["shots"],
        seeds=setting["seeds"],
        tune=setting["tune"],
        search=setting["search"],
        selection=setting["selection"],
        dataset=rows.get("dataset"),
        verbose=verbose,
    )
    if runs.empty:
        raise RuntimeError(f"No few-shot result: {runs.attrs['skipped'] or 'no usable shots'}")
    skipped = {f"few-shot {k}": v for k, v in runs.attrs["skipped"].items()}
    runs.insert(0, "labeling", _LABELING)
    summary = summarize_fewshot(runs)
    if rows.get("dataset"):
        summary = _with_published(summary, rows["dataset"], rows["encoder"])
    return {
        "runs": runs,
        "summary": summary,
        "skipped": skipped,
        "notes": rows["notes"] + list(runs.attrs["warnings"]),
        "protocol": _protocol(rows, setting),
    }


def _with_published(summary, dataset, encoder):
    """The summary with ``published``, ``difference`` and ``published_source`` columns."""
    from .._published import compare_with_published

    pretrained = None if encoder.pretrained in (None, "default") else str(encoder.pretrained)
    return compare_with_published(
        summary, model=encoder.model, dataset=dataset, pretrained=pretrained
    )


def _protocol(rows, setting):
    """One sentence on where the support, validation and test rows came from."""
    if not setting["tune"]:
        validation = "untuned: every method at its default hyper-parameters"
    else:
        source = (
            "the val split"
            if rows.get("val_images") is not None
            else "the train split (CoOp's ImageNet val is its test set)"
            if rows.get("dataset") == "ImageNet"
            else "the other training rows"
        )
        validation = (
            f"hyper-parameters chosen on min(k, 4) validation shots per class from "
            f"{source} over the '{setting['search']}' grids"
            + _SELECTION_WORDS.get(setting.get("selection"), "")
        )
    test = (
        "the test split"
        if rows.get("test_images") is not None
        else "every row in neither the support nor the validation set"
    )
    return f"Support: k shots per class; {validation}; scored on {test}."


def _folder_retrieval(rows, methods, setting, verbose):
    pca_text = _pca_rows(rows, setting["pca"], "imagenet", None) if "pca" in methods else None
    results = run_retrieval_study(
        rows["images"],
        rows["labels"],
        pca_text_embeddings=pca_text,
        encoder=rows["encoder"] if "inversion" in methods else None,
        methods=methods,
        n_queries=setting["n_queries"],
        random_state=setting["random_state"],
        verbose=verbose,
    )
    if results.empty:
        raise RuntimeError(f"No retrieval result: {results.attrs['skipped']}")
    skipped = {f"retrieval {k}": v for k, v in results.attrs["skipped"].items()}
    results.insert(0, "labeling", _LABELING)
    return {"retrieval": results, "skipped": skipped, "notes": []}


def _folder_summary(study, data, model, pretrained, config, result, rows):
    runs, retrieval = result.get("runs"), result.get("retrieval")
    unreadable = rows["unreadable"]
    notes = result["notes"]
    if unreadable:
        notes = [
            (
                f"{len(unreadable)} unreadable images were left out "
                "(listed under 'unreadable' in summary.json)."
            )
        ] + notes
    return {
        "title": f"skvlm {study} report",
        "description": f"`python -m skvlm {study}` on `{data}` with `{model}` (`{pretrained}`).",
        "protocol": result.get("protocol", ""),
        "skvlm_version": __version__,
        "elapsed_s": None,
        "config": config,
        "skipped": result["skipped"],
        "fewshot": fewshot_summary_dict(result["summary"], runs) if runs is not None else {},
        "retrieval": retrieval_summary_dict(retrieval) if retrieval is not None else {},
        "findings": findings(runs, retrieval, None, expectations=((_LABELING, 1),)),
        "notes": notes,
        "unreadable": unreadable,
    }
