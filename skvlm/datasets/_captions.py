"""Captioned image pairs (COCO / Flickr30k style): one row per (image, caption)."""

import csv
import json
import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._files import check_files_exist

__all__ = ["load_captioned_pairs"]

_PATH_COLUMNS = ("path", "image", "image_path", "filepath", "file", "filename", "img")
_LABEL_COLUMNS = ("label", "class", "category")
_CAPTION_COLUMNS = ("caption", "text", "title", "sentence", "raw")


def _pick_column(columns, wanted, candidates, path, what):
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{path!r} has no column {wanted!r} (columns: {columns}).")
        return wanted
    lowered = {str(c).lower(): c for c in columns}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    raise ValueError(
        f"Cannot tell which column of {path!r} holds the {what}: columns are {columns}; "
        f"name one {list(candidates[:3])} or pass {what}_column=..."
    )


def _read_records(path):
    """(rows as dicts, column names) from a CSV/TSV or JSON-lines file."""
    try:
        return _read_utf8_records(path)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"The captions file {path!r} is not UTF-8 text (it holds the byte "
            f"{exc.object[exc.start : exc.start + 1]!r}); save it as UTF-8."
        ) from None


def _read_utf8_records(path):
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        records = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"Malformed JSON in {path!r}, line {number}: {exc}") from None
                if not isinstance(record, dict):
                    raise ValueError(
                        f"{path!r}, line {number}: expected a JSON object, got {record!r}."
                    )
                records.append(record)
        columns = list(dict.fromkeys(k for r in records for k in r))
        return records, columns
    if suffix not in (".csv", ".tsv", ".txt"):
        raise ValueError(
            f"Unsupported captions file {path!r}: use .csv, .tsv or .jsonl (one JSON "
            "object per line)."
        )
    with open(path, encoding="utf-8", newline="") as handle:
        delimiter = "\t" if suffix == ".tsv" else ","
        reader = csv.DictReader(handle, delimiter=delimiter)
        try:
            records = list(reader)
        except csv.Error as exc:
            raise ValueError(f"Malformed CSV {path!r}: {exc}") from None
        return records, list(reader.fieldnames or [])


def load_captioned_pairs(
    path, *, root=None, path_column=None, caption_column=None, label_column=None, check_files=True
):
    """Read (image path, caption) pairs from a CSV/TSV or JSON-lines file.

    One row per pair; an image with five captions (COCO, Flickr30k) has five rows.
    ``image_ids`` numbers the distinct images, so "same id" is the relevance of
    text-to-image and image-to-text retrieval
    (:func:`skvlm.retrieval.mean_average_precision`, :func:`skvlm.retrieval.recall_at_k`).

    Parameters
    ----------
    path : str or path
        ``.csv`` (header row), ``.tsv`` or ``.jsonl`` (one object per line).
    root : str, path or None, default=None
        Folder relative image paths are resolved against; None: the file's folder.
    path_column, caption_column : str or None, default=None
        Column (key) names; None picks the first of "path", "image", "image_path",
        "filepath", "file", "filename" and of "caption", "text", "title", "sentence".
    label_column : str or None, default=None
        A column of class labels (for image→image retrieval by class); None uses
        "label", "class" or "category" when the file has one.
    check_files : bool, default=True
        Check that every image exists.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths`` (list of absolute paths, one per row), ``captions`` (list of str),
        ``image_ids`` (ndarray of int, the index of the row's image in
        ``unique_paths``), ``unique_paths`` (list, first-seen order) and ``labels``
        (ndarray of str, one per row, or None without a label column).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.png", "b.png"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> _ = (folder / "pairs.csv").write_text(
    ...     "image,caption\\na.png,a red circle\\nb.png,a blue star\\na.png,red round thing\\n")
    >>> pairs = load_captioned_pairs(folder / "pairs.csv")
    >>> pairs.captions, pairs.image_ids.tolist(), len(pairs.unique_paths)
    (['a red circle', 'a blue star', 'red round thing'], [0, 1, 0], 2)
    """
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        kind = "is a folder, not a file" if os.path.isdir(path) else "not found"
        raise FileNotFoundError(f"Captions file {kind}: {path!r}.")
    records, columns = _read_records(path)
    if not records:
        raise ValueError(f"The captions file {path!r} has no rows.")
    path_key = _pick_column(columns, path_column, _PATH_COLUMNS, path, "path")
    caption_key = _pick_column(columns, caption_column, _CAPTION_COLUMNS, path, "caption")
    base = (
        os.path.dirname(os.path.abspath(path))
        if root is None
        else os.path.expanduser(os.fspath(root))
    )
    paths, captions = [], []
    for number, record in enumerate(records, 1):
        image, caption = record.get(path_key), record.get(caption_key)
        if not isinstance(image, str) or not image or not isinstance(caption, str):
            raise ValueError(
                f"{path!r}, row {number}: needs a {path_key!r} string and a "
                f"{caption_key!r} string, got {image!r} and {caption!r}."
            )
        paths.append(os.path.abspath(os.path.join(base, image)))
        captions.append(caption)
    unique = list(dict.fromkeys(paths))
    index = {p: i for i, p in enumerate(unique)}
    if check_files:
        check_files_exist(unique, path)
    return Bunch(
        paths=paths,
        captions=captions,
        image_ids=np.array([index[p] for p in paths], dtype=np.int64),
        unique_paths=unique,
        labels=_labels(records, columns, label_column, path),
    )


def _labels(records, columns, label_column, path):
    """The label column's values (str), or None when there is none."""
    try:
        key = _pick_column(columns, label_column, _LABEL_COLUMNS, path, "label")
    except ValueError:
        if label_column is not None:
            raise
        return None
    values = [record.get(key) for record in records]
    missing = [n for n, value in enumerate(values, 1) if value in (None, "")]
    if missing:
        raise ValueError(f"{path!r}: the label column {key!r} is empty in rows {missing[:5]}.")
    return np.asarray([str(value) for value in values])
