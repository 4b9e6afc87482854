"""Checks on the files a loader lists: that they exist, and that they decode.

Decoding is checked while paths and labels are still one list, so that leaving an
unreadable file out drops its label with it. Each file is read once; the outcome is
remembered by the hash of the bytes, so a file met again (a second call, a
duplicate, the same image under two split subsets) is not decoded again.
"""

import hashlib
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

_ON_ERROR = (None, "raise", "skip")
_DECODED = {}  # blake2b of a file's bytes -> None (decodes) or (path, why it does not)
_DECODED_LOCK = threading.Lock()
_LISTED = 10  # files named in a warning or an error


def check_files_exist(paths, source):
    """Raise FileNotFoundError naming the listed files that are missing."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(paths)} images listed in {source!r} are missing, "
            f"e.g. {missing[:3]}; check root (the folder the paths are relative to)."
        )


def check_on_error(on_error):
    if on_error not in _ON_ERROR:
        raise ValueError(
            f"on_error must be None (list the files without decoding them), 'raise' or "
            f"'skip', got {on_error!r}."
        )


def _why_unreadable(path):
    """None when the file decodes as an image, else one line saying why not."""
    from .._images import UnreadableImageError, load_rgb

    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as exc:
        return f"Cannot read image {path!r}: {exc.strerror or exc}"
    if not content:
        return f"Cannot read image {path!r}: the file is empty (0 bytes)"
    key = hashlib.blake2b(content, digest_size=16).digest()
    with _DECODED_LOCK:
        known = _DECODED.get(key, False)
    if known is False:
        try:
            load_rgb(path, content=content)
            known = None
        except (UnreadableImageError, MemoryError) as exc:
            known = (path, str(exc) or f"Cannot read image {path!r}: {type(exc).__name__}")
        with _DECODED_LOCK:
            _DECODED[key] = known
    if known is None:
        return None
    first_path, message = known  # the message names the file it was first seen as
    return message.replace(repr(first_path), repr(path))


def unreadable_images(paths, n_jobs=None):
    """``{path: reason}`` for the distinct files of ``paths`` that do not decode.

    The files are read and decoded by ``n_jobs`` threads (default: up to 8, one per
    core); Pillow releases the interpreter lock while it decodes.
    """
    distinct = list(dict.fromkeys(paths))
    workers = n_jobs or min(8, os.cpu_count() or 1, max(len(distinct), 1))
    if workers == 1 or len(distinct) < 2:
        reasons = [_why_unreadable(p) for p in distinct]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(_why_unreadable, distinct))
    return {p: r for p, r in zip(distinct, reasons) if r is not None}


def _listing(unreadable):
    reasons = list(unreadable.values())
    more = f"; and {len(reasons) - _LISTED} more" if len(reasons) > _LISTED else ""
    return "; ".join(reasons[:_LISTED]) + more


def drop_unreadable(paths, on_error, source, n_jobs=None):
    """The positions of ``paths`` to keep, after checking that each file decodes.

    ``on_error=None`` checks nothing (every position is kept); ``"raise"`` raises an
    UnreadableImageError listing the files that do not decode; ``"skip"`` leaves
    them out with one UnreadableImageWarning naming each, and raises when none is
    left.

    Returns
    -------
    kept : list of int
    unreadable : dict
        ``{path: reason}`` of the files left out.
    """
    check_on_error(on_error)
    if on_error is None:
        return list(range(len(paths))), {}
    from .._images import UnreadableImageError

    unreadable = unreadable_images(paths, n_jobs=n_jobs)
    if not unreadable:
        return list(range(len(paths))), {}
    kept = [i for i, p in enumerate(paths) if p not in unreadable]
    count = f"{len(unreadable)} of the {len(set(paths))} images of {source!r}"
    if on_error == "raise" or not kept:
        hint = (
            " (none is readable)"
            if not kept and on_error == "skip"
            else ("; pass on_error='skip' to leave them out (with one warning)")
        )
        raise UnreadableImageError(f"{count} cannot be read{hint}: {_listing(unreadable)}")
    from ..encoders import UnreadableImageWarning

    warnings.warn(
        f"on_error='skip' left out {count} (their labels with them): {_listing(unreadable)}",
        UnreadableImageWarning,
        stacklevel=3,
    )
    return kept, unreadable
