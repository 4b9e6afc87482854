"""The numbers the papers and reference repositories publish, with the source of each.

:func:`published_results` reads the CSV files shipped in ``skvlm/data/published/`` (one per
source: Tip-Adapter's ``exp.log``, GDA's ``exp.log`` and ``logs/architecture.log``, APE's
``APE_results.ipynb``, Tables 2 and 3 of Herzog & Wang 2026, the Cross the Gap poster);
:func:`compare_with_published` puts them beside measured results.

Every row names where its number was read (repository, commit, file and line, or paper and
table) in ``source``, and how the source labels it in ``reported_as``. The values are the
sources' own: per-dataset figures rounded as published, means over the sources' seeds.
"""

import difflib
from importlib import resources

__all__ = ["PUBLISHED_ONLY_METHODS", "compare_with_published", "published_results"]

#: Method keys that only the published table uses (no skvlm study method runs them).
PUBLISHED_ONLY_METHODS = {
    "tip_adapter_f": "Tip-Adapter-F: Tip-Adapter with the cache keys fine-tuned",
    "ape_t": "APE-T: APE with the category residual trained",
    "lda_pca": "LDA on PCA<- projected image embeddings (Herzog & Wang 2026, Table 2)",
    "zeroshot_oti": "zero-shot classification of OTI-inverted images (Cross the Gap, text-text)",
}

#: Other spellings of method keys accepted in measured tables.
_METHOD_ALIASES = {"zero_shot": "zeroshot", "gda": "lda"}

_STRING_COLUMNS = (
    "method",
    "model",
    "pretrained",
    "dataset",
    "task",
    "metric",
    "source",
    "reported_as",
)
_KEYS = ["method", "model", "pretrained", "dataset", "shots", "task", "metric"]
_RETRIEVAL_TASKS = ("image", "text")


def _pandas():
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "skvlm's published results are a pandas table; install it: pip install pandas"
        ) from exc
    return pandas


def published_results():
    """Few-shot accuracies and retrieval mAPs that the references publish.

    Returns
    -------
    results : pandas.DataFrame
        One row per published number, with columns:

        - ``method``: the study's method key (``zeroshot``, ``prototype``,
          ``prototype_pca``, ``lda`` (GDA), ``tip_adapter``, ``tip_x``, ``ape``; retrieval:
          ``raw``, ``inversion`` (OTI / OVI), ``pca`` (PCA←)), or one of
          :data:`PUBLISHED_ONLY_METHODS`.
        - ``model``, ``pretrained``: open_clip model name and tag (``RN50``,
          ``openai``); timm names for DINO; ``SLIP-ViT-B-16`` / ``SLIP-ViT-L-16`` as the
          Cross the Gap repository names them, with an empty tag.
        - ``dataset``: a ``COOP_DATASETS`` name, ``ROxford`` / ``RParis``, or a mean over
          a source's datasets: ``mean_coop11`` (the 11 CoOp datasets),
          ``mean_seed002_table3`` (the 13 datasets of Herzog & Wang's Table 3),
          ``mean_cross_the_gap_image`` / ``_text`` / ``_classification`` (Cross the Gap's
          datasets for that task).
        - ``shots``: labelled images per class (0 for zero-shot and retrieval).
        - ``acc1``: top-1 accuracy as a fraction (NaN for retrieval rows).
        - ``task``: ``classification``, ``image`` (image→image retrieval) or ``text``
          (text→text retrieval); ``metric``: ``acc1`` or ``mAP``; ``value``: the number
          in that metric, as a fraction.
        - ``source``: where the number was read; ``reported_as``: the source's label.

    Examples
    --------
    >>> from skvlm._published import published_results
    >>> table = published_results()
    >>> rn50 = table[(table.model == "RN50") & (table.method == "tip_adapter")]
    >>> round(float(100 * rn50[rn50.shots == 16].acc1.mean()), 2)
    70.32
    """
    pd = _pandas()
    folder = resources.files("skvlm") / "data" / "published"
    frames = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".csv"):
            with entry.open("r", encoding="utf-8") as handle:
                frames.append(
                    pd.read_csv(
                        handle, dtype={c: str for c in _STRING_COLUMNS}, keep_default_na=False
                    )
                )
    table = pd.concat(frames, ignore_index=True)
    table["shots"] = table["shots"].astype("int64")
    table["value"] = table["value"].astype("float64") / 100.0
    table["acc1"] = table["value"].where(table["metric"] == "acc1")
    columns = [
        "method",
        "model",
        "pretrained",
        "dataset",
        "shots",
        "acc1",
        "task",
        "metric",
        "value",
        "source",
        "reported_as",
    ]
    return table[columns].sort_values(_KEYS, kind="stable").reset_index(drop=True)


def _with_constant(frame, name, value):
    """``frame`` with column ``name`` set to ``value`` (an error if it already has one)."""
    if value is None:
        return frame
    if name in frame.columns:
        raise ValueError(f"measured already has a {name!r} column; pass {name}=None or drop it.")
    frame[name] = value
    return frame


def _task_of(frame):
    """The published task of each measured row: a retrieval ``task`` column, else classification."""
    if "task" not in frame.columns:
        return ["classification"] * len(frame)
    # the study writes "image→image" / "text→text"; the table writes "image" / "text"
    return [str(t).split("→")[0] for t in frame["task"]]


def _resolve_pretrained(frame, table):
    """Fill missing tags: a model's only published tag, else ``openai`` where it has several."""
    tags = table.groupby("model")["pretrained"].unique()
    missing = frame["pretrained"].isna()

    def guess(model):
        options = list(tags.get(model, []))
        if len(options) == 1:
            return options[0]
        return "openai" if "openai" in options else None

    frame.loc[missing, "pretrained"] = [guess(m) for m in frame.loc[missing, "model"]]
    return frame


def _canonical_datasets(frame, table):
    """Spellings differing only by case, ``-``, ``_`` or spaces map to the table's names."""
    known = sorted(set(table["dataset"]))
    by_key = {"".join(ch for ch in name.lower() if ch.isalnum()): name for name in known}
    out = []
    for name in frame["dataset"].astype(str):
        key = "".join(ch for ch in name.lower() if ch.isalnum())
        out.append(by_key.get(key, name))
        if key not in by_key:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            if close:
                import warnings

                warnings.warn(
                    f"no published numbers for dataset {name!r}; did you mean "
                    f"{' or '.join(map(repr, close))}?",
                    UserWarning,
                    stacklevel=4,
                )
    frame["dataset"] = out
    return frame


def _match_keys(measured, table):
    """The published key (``_KEYS``) of each measured row, and the measured value column name."""
    pd = _pandas()
    keys = pd.DataFrame(index=measured.index)
    keys["method"] = [_METHOD_ALIASES.get(str(m), str(m)) for m in measured["method"]]
    keys["model"] = measured["model"].astype(str)
    keys["pretrained"] = (
        measured["pretrained"]
        if "pretrained" in measured.columns
        else pd.Series(None, index=measured.index, dtype=object)
    )
    keys["dataset"] = measured["dataset"]
    keys["task"] = _task_of(measured)
    keys["metric"] = ["acc1" if t == "classification" else "mAP" for t in keys["task"]]
    keys = _resolve_pretrained(_canonical_datasets(keys, table), table)
    # zero-shot and retrieval use no labelled support: their published rows say 0 shots
    no_support = (keys["method"] == "zeroshot") | keys["task"].isin(_RETRIEVAL_TASKS)
    if "shots" in measured.columns:
        shots = pd.to_numeric(measured["shots"], errors="coerce").astype("Float64")
    elif (~no_support).any():
        raise ValueError(
            "measured has few-shot rows but no 'shots' column; add the number of "
            "labelled images per class as 'shots'."
        )
    else:
        shots = pd.Series(0.0, index=measured.index, dtype="Float64")
    keys["shots"] = shots.mask(no_support, 0.0).round().astype("Int64")
    return keys


def _measured_values(measured, keys):
    """The measured number of each row: ``acc1`` for classification, ``mAP`` for retrieval."""
    pd = _pandas()
    values = pd.Series(float("nan"), index=measured.index)
    for metric in sorted(set(keys["metric"])):
        rows = keys["metric"] == metric
        if metric not in measured.columns:
            raise ValueError(
                f"measured has {int(rows.sum())} row(s) whose task needs a "
                f"{metric!r} column (as a fraction), and no such column."
            )
        column = pd.to_numeric(measured.loc[rows, metric], errors="coerce")
        if (column > 1).any():
            raise ValueError(
                f"measured {metric!r} holds values above 1 (max {column.max():g}): "
                "give fractions, not percentages."
            )
        values[rows] = column
    return values


def compare_with_published(measured, *, model=None, dataset=None, pretrained=None):
    """Add the published number and the difference to each measured result.

    A measured row matches a published one (:func:`published_results`) when its method,
    model, pretrained tag, dataset, shots and task agree. Zero-shot and retrieval rows match
    the published 0-shot row whatever their ``shots``.

    Parameters
    ----------
    measured : pandas.DataFrame
        Measured results with a ``method`` column (the study's keys; ``zero_shot`` and
        ``gda`` are accepted for ``zeroshot`` and ``lda``) and ``acc1`` (a fraction) for
        classification rows, or a ``task`` column (``image`` / ``text``, or the study's
        ``image→image`` / ``text→text``) and ``mAP`` for retrieval rows. Few-shot rows need
        ``shots``. ``model``, ``dataset`` and ``pretrained`` come from columns of the same
        name or from the keywords below. Not modified.
    model : str, default=None
        Model name (open_clip's, e.g. ``"RN50"``) of every row, when ``measured`` has no
        ``model`` column.
    dataset : str, default=None
        Dataset of every row (a ``COOP_DATASETS`` name such as ``"OxfordPets"``; case,
        ``-``, ``_`` and spaces are ignored), when ``measured`` has no ``dataset`` column.
    pretrained : str, default=None
        Pretrained tag of every row, when ``measured`` has no ``pretrained`` column. Left
        at None: the model's only published tag, or ``"openai"`` when several are published.

    Returns
    -------
    compared : pandas.DataFrame
        A copy of ``measured``, same rows and order, with ``published`` (the published value,
        a fraction; NaN where nothing matches), ``difference`` (measured minus published) and
        ``published_source`` (where the published number was read).

    Examples
    --------
    >>> import pandas as pd
    >>> from skvlm._published import compare_with_published
    >>> measured = pd.DataFrame({"method": ["tip_adapter", "prototype"], "shots": [16, 16],
    ...                          "acc1": [0.88, 0.80]})
    >>> out = compare_with_published(measured, model="RN50", dataset="OxfordPets")
    >>> out[["method", "published", "difference"]].round(4).to_dict("records")
    [{'method': 'tip_adapter', 'published': 0.8814, 'difference': -0.0014}, \
{'method': 'prototype', 'published': nan, 'difference': nan}]
    """
    pd = _pandas()
    if not isinstance(measured, pd.DataFrame) or "method" not in measured.columns:
        raise ValueError("measured must be a pandas DataFrame with a 'method' column.")
    frame = measured.copy()
    for name, value in (("model", model), ("dataset", dataset), ("pretrained", pretrained)):
        frame = _with_constant(frame, name, value)
    for name in ("model", "dataset"):
        if name not in frame.columns:
            raise ValueError(f"measured has no {name!r} column: add one or pass {name}=...")
    table = published_results()
    keys = _match_keys(frame, table)
    values = _measured_values(frame, keys)
    published = table[_KEYS + ["value", "source"]].astype({"shots": "Int64"})
    matched = keys[_KEYS].merge(published, on=_KEYS, how="left", validate="many_to_one")
    out = measured.copy()
    out["published"] = matched["value"].to_numpy(dtype=float)
    out["difference"] = values.to_numpy(dtype=float) - out["published"].to_numpy()
    out["published_source"] = matched["source"].to_numpy(dtype=object)
    return out
