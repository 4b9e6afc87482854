"""Loaders for real data: image folders, the CoOp few-shot splits, captioned pairs.

Every loader returns file paths, never decoded images: the encoders read the
images, so listing a folder of a million files takes seconds and no memory to
speak of. Errors name the file or folder at fault.
"""

import difflib
import json
import os

import numpy as np
from sklearn.utils import Bunch

from ._captions import load_captioned_pairs
from ._files import check_files_exist, drop_unreadable

__all__ = [
    "COOP_DATASETS",
    "IMAGE_EXTENSIONS",
    "load_captioned_pairs",
    "load_coop_split",
    "load_image_folder",
]

# torchvision's ``IMG_EXTENSIONS`` (datasets/folder.py), matched case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# The few-shot benchmark of CoOp (Zhou et al., IJCV 2022) and Tip-Adapter (Zhang et al.,
# ECCV 2022). Folder layout from CoOp's ``datasets/*.py`` (``dataset_dir``, ``image_dir``
# and ``split_path``); the per-dataset prompt from CoOp's ``CUSTOM_TEMPLATES`` in
# ``trainers/zsclip.py``, which Tip-Adapter's ``datasets/*.py`` repeat, except ImageNet,
# where Tip-Adapter ensembles CoOp's seven ``IMAGENET_TEMPLATES_SELECT``
# (``trainers/imagenet_templates.py``). ``split=None``: CoOp reads no split_zhou JSON for
# that dataset but text files, which :func:`load_coop_split` reads the same way.
_IMAGENET_TEMPLATES_SELECT = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]
COOP_DATASETS = {
    "ImageNet": {
        "dataset_dir": "imagenet",
        "image_dir": "images",
        "split": None,
        "templates": _IMAGENET_TEMPLATES_SELECT,
    },
    "Caltech101": {
        "dataset_dir": "caltech-101",
        "image_dir": "101_ObjectCategories",
        "split": "split_zhou_Caltech101.json",
        "templates": ["a photo of a {}."],
    },
    "OxfordPets": {
        "dataset_dir": "oxford_pets",
        "image_dir": "images",
        "split": "split_zhou_OxfordPets.json",
        "templates": ["a photo of a {}, a type of pet."],
    },
    "StanfordCars": {
        "dataset_dir": "stanford_cars",
        "image_dir": "",
        "split": "split_zhou_StanfordCars.json",
        "templates": ["a photo of a {}."],
    },
    "Flowers102": {
        "dataset_dir": "oxford_flowers",
        "image_dir": "jpg",
        "split": "split_zhou_OxfordFlowers.json",
        "templates": ["a photo of a {}, a type of flower."],
    },
    "Food101": {
        "dataset_dir": "food-101",
        "image_dir": "images",
        "split": "split_zhou_Food101.json",
        "templates": ["a photo of {}, a type of food."],
    },
    "FGVCAircraft": {
        "dataset_dir": "fgvc_aircraft",
        "image_dir": "images",
        "split": None,
        "templates": ["a photo of a {}, a type of aircraft."],
    },
    "SUN397": {
        "dataset_dir": "sun397",
        "image_dir": "SUN397",
        "split": "split_zhou_SUN397.json",
        "templates": ["a photo of a {}."],
    },
    "DTD": {
        "dataset_dir": "dtd",
        "image_dir": "images",
        "split": "split_zhou_DescribableTextures.json",
        "templates": ["{} texture."],
    },
    "EuroSAT": {
        "dataset_dir": "eurosat",
        "image_dir": "2750",
        "split": "split_zhou_EuroSAT.json",
        "templates": ["a centered satellite photo of {}."],
    },
    "UCF101": {
        "dataset_dir": "ucf101",
        "image_dir": "UCF-101-midframes",
        "split": "split_zhou_UCF101.json",
        "templates": ["a photo of a person doing {}."],
    },
}
# CoOp's class names for two of them.
_ALIASES = {"oxfordflowers": "Flowers102", "describabletextures": "DTD"}
_SUBSETS = ("train", "val", "test")
# dataset=None: a split file of your own, paths relative to root.
_OWN_SPLIT = {"dataset_dir": "", "image_dir": "", "split": None, "templates": ["a photo of a {}."]}


# --------------------------------------------------------------------------- image folder


def _is_image(name, extensions):
    return not name.startswith(".") and name.lower().endswith(extensions)


def _folder_identity(path):
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _scan_files(folder, extensions):
    """Image files under ``folder`` (recursively, following links), sorted.

    A link to a folder that encloses it (``loop -> ..``, at any height) is not
    followed: it would repeat the tree until the system's link limit and fail there.
    A folder linked into two places is listed under both, as the tree shows it.
    """
    found = []
    # The folder and every folder above it, up to "/": a link to any of them loops.
    enclosing, path = set(), os.path.realpath(folder)
    while _folder_identity(path) not in enclosing:
        enclosing.add(_folder_identity(path))
        path = os.path.dirname(path)
    stack = [(folder, frozenset(enclosing))]
    while stack:
        current, enclosing = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    identity = _folder_identity(entry.path)
                    if identity not in enclosing:
                        stack.append((entry.path, enclosing | {identity}))
                elif _is_image(entry.name, extensions) and entry.is_file():
                    found.append(entry.path)
    found.sort()
    return found


def _check_folder(root, what="root"):
    root = os.path.expanduser(os.fspath(root))
    if not os.path.isdir(root):
        kind = "is not a folder" if os.path.exists(root) else "does not exist"
        raise FileNotFoundError(f"The {what} folder {root!r} {kind}.")
    return root


def _labelled(paths, target, target_names):
    target = np.asarray(target, dtype=np.int64)
    names = np.asarray(target_names, dtype=str)
    labels = names[target] if len(target) else np.array([], dtype=str)
    return Bunch(paths=list(paths), labels=labels, target=target)


def load_image_folder(
    root,
    *,
    extensions=IMAGE_EXTENSIONS,
    allow_empty=False,
    on_error=None,
    n_jobs=None,
    return_X_y=False,
):
    """List a class-per-folder image dataset (torchvision's ``ImageFolder`` layout).

    ``root/<class name>/**/<image>``: each sub-folder of ``root`` is a class, and
    every image file below it (at any depth) is one sample. Class folders and files
    are sorted, so the result does not depend on the file system's order. Nothing
    is decoded: the encoders read the images.

    Parameters
    ----------
    root : str or path
        The dataset folder.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File suffixes that count as images (case-insensitive); hidden files and
        folders are skipped.
    allow_empty : bool, default=False
        Keep class folders without images (as classes with no sample) instead of
        raising.
    on_error : None, "raise" or "skip", default=None
        None lists the files without opening them (the encoders read them). "skip"
        decodes every file now (in ``n_jobs`` threads; a file whose bytes were
        checked before is not decoded again) and leaves the truncated, corrupt,
        empty or oversized ones out together with their labels, naming each in one
        :class:`~skvlm.encoders.UnreadableImageWarning`: the paths and labels
        returned stay aligned. "raise" decodes every file and raises an
        :class:`~skvlm.encoders.UnreadableImageError` naming those that fail.
    n_jobs : int or None, default=None
        Threads that decode the files under ``on_error``; None: up to 8.
    return_X_y : bool, default=False
        Return ``(paths, labels)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``paths`` (list of str), ``labels`` (ndarray of str, the class folder name of
        each path), ``target`` (ndarray of int, index into ``target_names``),
        ``target_names`` (list of str, sorted class folder names), ``root`` and
        ``unreadable`` (``{path: reason}`` of the files ``on_error="skip"`` left out).
    (paths, labels) : tuple
        With ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        ``root`` is missing, has no class folder, or a class folder has no image.
    UnreadableImageError
        With ``on_error="raise"``, a file does not decode; with ``"skip"``, none does.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ["cat/1.png", "cat/2.jpg", "dog/a.png", "dog/notes.txt"]:
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     _ = (root / name).write_bytes(b"")
    >>> data = load_image_folder(root)
    >>> data.target_names, data.labels.tolist(), data.target.tolist()
    (['cat', 'dog'], ['cat', 'cat', 'dog'], [0, 0, 1])
    """
    root = _check_folder(root)
    classes, paths, target = _class_files(
        root, tuple(ext.lower() for ext in extensions), allow_empty
    )
    kept, unreadable = drop_unreadable(paths, on_error, root, n_jobs)
    data = _labelled([paths[i] for i in kept], [target[i] for i in kept], classes)
    if return_X_y:
        return data.paths, data.labels
    data.update(target_names=classes, root=root, unreadable=unreadable)
    return data


def _class_files(root, extensions, allow_empty):
    """The sorted class folders of ``root``, every image below them and its class index."""
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(
            f"No class folders in {root!r}: expected the layout root/<class>/<image>."
        )
    paths, target = [], []
    for index, name in enumerate(classes):
        files = _scan_files(os.path.join(root, name), extensions)
        if not files and not allow_empty:
            raise FileNotFoundError(
                f"The class folder {os.path.join(root, name)!r} holds no image file "
                f"(extensions {', '.join(extensions)}); pass allow_empty=True to keep it."
            )
        paths.extend(files)
        target.extend([index] * len(files))
    return classes, paths, target


# --------------------------------------------------------------------------- CoOp splits


def _canonical_dataset(dataset):
    if dataset is None:
        return None
    by_key = {name.lower(): name for name in COOP_DATASETS}
    by_key.update(_ALIASES)
    key = str(dataset).lower().replace("-", "").replace("_", "")
    if key in by_key:
        return by_key[key]
    close = difflib.get_close_matches(str(dataset), list(COOP_DATASETS), n=3, cutoff=0.5)
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(
        f"Unknown CoOp dataset {dataset!r}; known: {sorted(COOP_DATASETS)}, or None for "
        f"a split file of your own.{hint}"
    )


def _read_json(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Split file not found: {path!r}.")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"Malformed split file {path!r}: {exc}") from None


def _parse_split(split, path):
    """{subset: [(relpath, label, classname), ...]} from a split_zhou JSON object."""
    if not isinstance(split, dict) or "train" not in split or "test" not in split:
        raise ValueError(
            f"Malformed split file {path!r}: expected an object with 'train', 'val' and "
            f"'test' lists of [relative path, label, class name] rows."
        )
    rows = {}
    for subset in _SUBSETS:
        entries = split.get(subset, [])
        if not isinstance(entries, list):
            raise ValueError(f"Malformed split file {path!r}: {subset!r} is not a list.")
        parsed = []
        for i, entry in enumerate(entries):
            if (
                not isinstance(entry, (list, tuple))
                or len(entry) != 3
                or not isinstance(entry[0], str)
                or not isinstance(entry[2], str)
            ):
                raise ValueError(
                    f"Malformed split file {path!r}: {subset}[{i}] = {entry!r} is not a "
                    "[relative path, label, class name] row."
                )
            try:
                label = int(entry[1])
            except (TypeError, ValueError):
                raise ValueError(
                    f"Malformed split file {path!r}: {subset}[{i}] has label {entry[1]!r}, "
                    "not an integer."
                ) from None
            parsed.append((entry[0], label, entry[2]))
        rows[subset] = parsed
    return rows


def _class_names(rows, path):
    """Class name of each label 0..C-1, checking that each label has one name."""
    names = {}
    for subset, entries in rows.items():
        for relpath, label, name in entries:
            if names.setdefault(label, name) != name:
                raise ValueError(
                    f"Inconsistent split file {path!r}: label {label} is both "
                    f"{names[label]!r} and {name!r} (at {subset} row {relpath!r})."
                )
    if not names:
        raise ValueError(f"The split file {path!r} lists no image.")
    if sorted(names) != list(range(len(names))):
        raise ValueError(
            f"The labels in {path!r} are not 0..{len(names) - 1}: {sorted(names)[:10]}..."
        )
    # CoOp turns "Faces_easy" into "Faces easy" when it builds prompts; so do we.
    return [names[label].replace("_", " ") for label in range(len(names))]


def _read_fgvc(dataset_dir):
    """CoOp's FGVCAircraft reader: variants.txt + images_variant_<subset>.txt."""
    variants_file = os.path.join(dataset_dir, "variants.txt")
    if not os.path.isfile(variants_file):
        raise FileNotFoundError(
            f"FGVCAircraft: {variants_file!r} not found (CoOp reads the class list from it)."
        )
    with open(variants_file, encoding="utf-8") as handle:
        variants = [line.strip() for line in handle if line.strip()]
    index = {name: i for i, name in enumerate(variants)}
    rows = {}
    for subset in _SUBSETS:
        path = os.path.join(dataset_dir, f"images_variant_{subset}.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"FGVCAircraft: split file {path!r} not found.")
        entries = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                parts = line.strip().split(" ")
                if len(parts) < 2 or " ".join(parts[1:]) not in index:
                    raise ValueError(
                        f"Malformed split file {path!r}, line {number}: {line.strip()!r} "
                        "is not '<image id> <variant listed in variants.txt>'."
                    )
                name = " ".join(parts[1:])
                entries.append((parts[0] + ".jpg", index[name], name))
        rows[subset] = entries
    return rows


def _read_imagenet(dataset_dir, image_dir):
    """CoOp's ImageNet reader: classnames.txt + images/train, images/val (val = test)."""
    names_file = os.path.join(dataset_dir, "classnames.txt")
    if not os.path.isfile(names_file):
        raise FileNotFoundError(
            f"ImageNet: {names_file!r} not found (CoOp's '<wnid> <class name>' list)."
        )
    wnid_names = {}
    with open(names_file, encoding="utf-8") as handle:
        for line in handle:
            wnid, _, name = line.strip().partition(" ")
            if wnid:
                wnid_names[wnid] = name
    rows = {}
    for subset, folder in (("train", "train"), ("test", "val")):
        data = load_image_folder(os.path.join(image_dir, folder))
        unknown = [w for w in data.target_names if w not in wnid_names]
        if unknown:
            raise ValueError(f"ImageNet: folders {unknown[:5]} are not in {names_file!r}.")
        rows[subset] = [
            (os.path.relpath(p, image_dir), int(t), wnid_names[data.target_names[t]])
            for p, t in zip(data.paths, data.target)
        ]
    rows["val"] = rows["test"]
    return rows


def load_coop_split(
    root, dataset, split_json=None, *, check_files=True, on_error=None, n_jobs=None
):
    """Load a dataset of the CoOp / Tip-Adapter few-shot benchmark with its split.

    CoOp (Zhou et al., 2022) fixed a train / val / test split per dataset in a
    ``split_zhou_<Name>.json`` file: ``{"train": [[relative path, label, class name],
    ...], "val": [...], "test": [...]}``. Tip-Adapter and most later few-shot papers
    reuse those files, and draw the k-shot support set from ``train``
    (:class:`skvlm.model_selection.FewShotSplit` does that).

    Parameters
    ----------
    root : str or path
        Either the data root that holds CoOp's dataset folder (``root/caltech-101``)
        or that dataset folder itself. Image paths are relative to the dataset's
        image folder (``101_ObjectCategories`` for Caltech101) when it exists there,
        else to the dataset folder.
    dataset : str or None
        One of ``COOP_DATASETS`` (ImageNet, Caltech101, OxfordPets, StanfordCars,
        Flowers102, Food101, FGVCAircraft, SUN397, DTD, EuroSAT, UCF101;
        case-insensitive; CoOp's OxfordFlowers and DescribableTextures are accepted
        too), or None for a split file of your own (paths relative to ``root``,
        template "a photo of a {}.").
    split_json : str, path or None, default=None
        The split file; None looks for CoOp's file name in the dataset folder.
        FGVCAircraft and ImageNet have no such file in CoOp: without ``split_json``
        they are read as CoOp reads them (``variants.txt`` +
        ``images_variant_*.txt``; ``classnames.txt`` + ``images/train`` and
        ``images/val``, the latter serving as val and test).
    check_files : bool, default=True
        Check that every listed image exists (a missing one is a clear error here,
        not a failure in the middle of encoding).
    on_error : None, "raise" or "skip", default=None
        As in :func:`load_image_folder`: "skip" decodes each listed image once (in
        ``n_jobs`` threads) and leaves the unreadable ones out of every subset with
        their labels, in one warning; "raise" raises naming them.
    n_jobs : int or None, default=None
        Threads that decode the files under ``on_error``; None: up to 8.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``train``, ``val`` and ``test``, each a Bunch of ``paths`` (absolute),
        ``labels`` (class names, ready for prompts: underscores become spaces as in
        CoOp's prompt builder) and ``target`` (int labels of the file); plus
        ``target_names`` (class name of each int label), ``templates`` (the
        dataset's prompt templates, format strings with one ``{}``), ``dataset``
        (the canonical name), ``split_json`` (the file read, or None) and
        ``unreadable`` (``{path: reason}`` of the images ``on_error="skip"`` left out).

    Raises
    ------
    FileNotFoundError
        The folder, the split file, or (with ``check_files``) an image is missing;
        the message names it.
    ValueError
        Unknown dataset name (with close matches) or malformed split file (named,
        with the bad row).

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "eurosat" / "2750" / "Forest").mkdir(parents=True)
    >>> _ = (root / "eurosat" / "2750" / "Forest" / "Forest_1.jpg").write_bytes(b"")
    >>> split = {"train": [["Forest/Forest_1.jpg", 0, "Forest"]], "val": [],
    ...          "test": [["Forest/Forest_1.jpg", 0, "Forest"]]}
    >>> _ = (root / "eurosat" / "split_zhou_EuroSAT.json").write_text(json.dumps(split))
    >>> data = load_coop_split(root, "eurosat")
    >>> data.target_names, data.templates, data.train.labels.tolist()
    (['Forest'], ['a centered satellite photo of {}.'], ['Forest'])
    """
    name, spec = _dataset_spec(dataset)
    dataset_dir, image_dir = _dataset_folders(_check_folder(root), spec)
    split_json, rows = _read_split(name, spec, split_json, dataset_dir, image_dir)
    out = _split_subsets(rows, image_dir, split_json or dataset_dir)
    out.update(templates=list(spec["templates"]), dataset=name, split_json=split_json)
    return _check_images(out, check_files, on_error, n_jobs, split_json or dataset_dir)


def _dataset_spec(dataset):
    """The canonical name of ``dataset`` and its folders, split file and templates."""
    name = _canonical_dataset(dataset)
    return name, COOP_DATASETS.get(name, _OWN_SPLIT)


def _dataset_folders(root, spec):
    """The dataset folder (``root`` itself or CoOp's folder in it) and its image folder."""
    dataset_dir = root
    if spec["dataset_dir"] and os.path.isdir(os.path.join(root, spec["dataset_dir"])):
        dataset_dir = os.path.join(root, spec["dataset_dir"])
    image_dir = dataset_dir
    if spec["image_dir"] and os.path.isdir(os.path.join(dataset_dir, spec["image_dir"])):
        image_dir = os.path.join(dataset_dir, spec["image_dir"])
    return dataset_dir, image_dir


def _read_split(name, spec, split_json, dataset_dir, image_dir):
    """The split file read (or None) and its ``{subset: [(relpath, label, classname)]}``."""
    if split_json is None and spec["split"] is not None:
        split_json = os.path.join(dataset_dir, spec["split"])
    if split_json is not None:
        split_json = os.path.expanduser(os.fspath(split_json))
        return split_json, _parse_split(_read_json(split_json), split_json)
    if name == "FGVCAircraft":
        return None, _read_fgvc(dataset_dir)
    if name == "ImageNet":
        return None, _read_imagenet(dataset_dir, image_dir)
    raise ValueError("dataset=None needs split_json: the path of your split file.")


def _split_subsets(rows, image_dir, source):
    """A Bunch of the class names and of each subset's absolute paths and labels."""
    target_names = _class_names(rows, source)
    out = Bunch(target_names=target_names, root=image_dir)
    for subset in _SUBSETS:
        paths = [os.path.abspath(os.path.join(image_dir, rel)) for rel, _, _ in rows[subset]]
        out[subset] = _labelled(paths, [label for _, label, _ in rows[subset]], target_names)
    return out


def _check_images(out, check_files, on_error, n_jobs, source):
    """Check the listed images once each; leave the unreadable ones out of every subset."""
    listed = list(dict.fromkeys(p for s in _SUBSETS for p in out[s].paths))
    if check_files:
        check_files_exist(listed, source)
    _, out.unreadable = drop_unreadable(listed, on_error, source, n_jobs)
    if out.unreadable:
        for subset in _SUBSETS:
            rows = [i for i, p in enumerate(out[subset].paths) if p not in out.unreadable]
            out[subset] = _labelled(
                [out[subset].paths[i] for i in rows], out[subset].target[rows], out.target_names
            )
    return out
