"""Content-addressed embedding cache: a process-wide memory layer over files on disk.

An embedding's key hashes the encoder's spec (model, weights identity, precision,
augmentation, library versions) and the item's content (the bytes of an image file or
array, or the text), never its position or name: a renamed copy of an image hits, an
edited file misses.

On disk, entries live in shard files, one per ``put_many`` (see
:mod:`skvlm._cache_shards`): immutable, written to a temporary file in the same folder
and renamed into place (``os.replace`` is atomic), so a reader sees a whole shard or
none, and several processes or machines (network filesystems included, where SQLite's
locking is unreliable) can fill one folder at once. Nothing is ever unpickled: the
format is raw bytes read with ``np.frombuffer``. No fsync: a write torn by a power loss
fails its checks and is recomputed, like any other damaged entry. Every entry's
checksum covers its key, so a payload moved under another key is rejected; a NaN or
inf output is never stored, and an entry holding one is treated as damaged.

The store of earlier versions, one small file per entry,
``<dir>/skvlm-embeddings-v2/<key[:2]>/<key>.emb``, is still read (never written)::

    magic (8 bytes) | n_values (uint32 LE) | blake2b-16(key + payload) | float32 LE payload
"""

import contextlib
import hashlib
import os
import re
import sys
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ._cache_shards import DAMAGED_NAME, SHARD_NAME, Shard, entry_digest, shard_store

_STORE_NAME = "skvlm-embeddings-v2"
_SHARDS = "shards"
_LEGACY_FILES = (
    "skvlm-embeddings.sqlite",
    "skvlm-embeddings.sqlite-wal",
    "skvlm-embeddings.sqlite-shm",
)
_SUFFIX = ".emb"
_TEMP_PREFIX = ".tmp-"
_MAGIC = b"SKVLMEV2"
_DIGEST_SIZE = 16
_HEADER_SIZE = len(_MAGIC) + 4 + _DIGEST_SIZE
_MEMORY_LIMIT_BYTES = 1 << 30  # the memory layer's bound: 1 GiB of vectors
# Only names skvlm itself writes are ever counted or deleted: a key is content_hash's
# 40 hex digits, a temporary file is _TEMP_PREFIX and 16 hex digits.
_ENTRY_NAME = re.compile(r"[0-9a-f]{40}" + re.escape(_SUFFIX))
_TEMP_NAME = re.compile(re.escape(_TEMP_PREFIX) + r"[0-9a-f]{16}")


class CacheCorruptionWarning(UserWarning):
    """Damaged on-disk cache entries were found; they were recomputed and rewritten."""


class CacheWriteWarning(UserWarning):
    """The on-disk cache could not be written (read-only or full); nothing was stored."""


def _library_dirs():
    import sklearn

    return tuple(
        str(Path(module).resolve().parent) + os.sep for module in (__file__, sklearn.__file__)
    )


def _caller_stacklevel():
    """The ``stacklevel`` that points a warning at the user's call.

    The depth of skvlm's internals (and of scikit-learn's ``set_output`` wrapper
    around ``transform``, or a ``Pipeline``) varies with the entry point, so a fixed
    number would blame a line inside the library. Call this from the function that
    calls ``warnings.warn``.
    """
    library = _library_dirs()
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(library):
        frame, level = frame.f_back, level + 1
    # A stack made only of library frames (e.g. a worker thread): name the outermost.
    return level if frame is not None else level - 1


class _MemoryLayer:
    """A thread-safe LRU mapping key -> float32 vector, bounded in bytes."""

    def __init__(self, limit_bytes=_MEMORY_LIMIT_BYTES):
        self.limit_bytes = limit_bytes
        self._items = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get_many(self, keys):
        found = {}
        with self._lock:
            for key in keys:
                vector = self._items.get(key)
                if vector is not None:
                    self._items.move_to_end(key)
                    found[key] = vector
        return found

    def put_many(self, items):
        with self._lock:
            for key, vector in items.items():
                if key in self._items:
                    continue
                # A read-only copy: a caller that later edits its array (or one it got
                # back from get_many) must not change what the next lookup returns.
                vector = np.array(vector, dtype=np.float32)
                vector.flags.writeable = False
                self._items[key] = vector
                self._bytes += vector.nbytes
            while self._bytes > self.limit_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self):
        with self._lock:
            self._items.clear()
            self._bytes = 0


# One memory layer per store (None = memory only, else the disk directory), so that
# a vector held in memory for one store is still written to another store's disk.
_MEMORY = {}
_MEMORY_LOCK = threading.Lock()


def _memory_layer(directory):
    key = None if directory is None else str(Path(directory).resolve())
    with _MEMORY_LOCK:
        return _MEMORY.setdefault(key, _MemoryLayer())


def clear_memory_cache():
    """Empty the process-wide memory layers (the disk layers are kept)."""
    with _MEMORY_LOCK:
        for layer in _MEMORY.values():
            layer.clear()


_entry_digest = entry_digest  # one checksum for both layouts


def _encode_entry(key, vector):
    payload = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    count = (len(payload) // 4).to_bytes(4, "little")
    return _MAGIC + count + _entry_digest(key, payload) + payload


def _decode_entry(key, data):
    """The vector stored in ``data``, or a string saying why the entry is damaged."""
    if len(data) < _HEADER_SIZE or data[: len(_MAGIC)] != _MAGIC:
        return f"not an skvlm cache entry ({len(data)} bytes, bad header)"
    count = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 4], "little")
    payload = data[_HEADER_SIZE:]
    if len(payload) != 4 * count:
        return f"truncated ({len(payload)} of {4 * count} payload bytes)"
    if data[len(_MAGIC) + 4 : _HEADER_SIZE] != _entry_digest(key, payload):
        return "checksum mismatch"
    vector = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    if not np.isfinite(vector).all():  # never written by skvlm: not a usable embedding
        return "non-finite values (NaN or inf)"
    return vector


def _read_entry(path, key):
    """The vector in the entry file ``path``, None if there is none, or why it is damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. no permission: recompute, like a damaged entry
        return f"unreadable ({exc.strerror or exc})"
    return _decode_entry(key, data)


class _DiskLayer:
    """Shard files under ``<directory>/skvlm-embeddings-v2/shards``, plus the
    one-file-per-entry entries of earlier versions (read only)."""

    def __init__(self, directory):
        self.root = Path(directory) / _STORE_NAME
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            parents = (self.root, *self.root.parents)
            blocker = next(p for p in parents if p.exists() or p.is_symlink())
            raise ValueError(
                f"cache={str(directory)!r} cannot hold an embedding cache: "
                f"{str(blocker)!r} is not a folder. Pass a directory (or None) as cache=."
            ) from None
        except OSError:
            pass  # e.g. no permission: nothing to read, and each write warns (CacheWriteWarning)
        self.shards = shard_store(self.root / _SHARDS)

    def _path(self, key):
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    def _has_legacy_entries(self):
        try:
            return any(len(name) == 2 for name in os.listdir(self.root))
        except OSError:
            return False

    def get_many(self, keys):
        found, damaged = self.shards.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing and self._has_legacy_entries():
            for key in missing:
                path = self._path(key)
                vector = _read_entry(path, key)
                if isinstance(vector, str):
                    damaged.append((path, vector))
                elif vector is not None:
                    found[key] = vector
        if damaged:
            # One warning per call, however many entries: a damaged folder would
            # otherwise print thousands of lines.
            where, reason = damaged[0]
            warnings.warn(
                f"{len(damaged)} damaged embedding cache entr{'y' if len(damaged) == 1 else 'ies'} "
                f"(e.g. {str(where)!r}: {reason}); "
                f"{'it was' if len(damaged) == 1 else 'they were'} recomputed and rewritten.",
                CacheCorruptionWarning,
                stacklevel=_caller_stacklevel(),
            )
        return found

    def put_many(self, items):
        if items:
            self.shards.put_many(items)


class EmbeddingCache:
    """Memory layer, plus a disk layer when a directory is given."""

    def __init__(self, directory=None):
        self.directory = directory
        self.disk = _DiskLayer(directory) if directory is not None else None
        self.memory = _memory_layer(directory)

    def get_many(self, keys):
        keys = list(dict.fromkeys(keys))  # a repeated item is one entry: read (and reported) once
        found = self.memory.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing and self.disk is not None:
            from_disk = self.disk.get_many(missing)
            self.memory.put_many(from_disk)
            found.update(from_disk)
        return found

    def put_many(self, items):
        # A NaN or inf output is not worth keeping: it is recomputed (and seen) each time.
        items = {key: vector for key, vector in items.items() if np.isfinite(vector).all()}
        self.memory.put_many(items)
        if self.disk is None:
            return
        try:
            self.disk.put_many(items)
        except OSError as exc:
            # A read-only or full cache folder must not cost the caller the embeddings
            # already computed; each entry is whole or absent either way.
            warnings.warn(
                f"Could not write to the embedding cache {str(self.disk.root)!r} "
                f"({exc.strerror or exc}); the embeddings are returned but not stored.",
                CacheWriteWarning,
                stacklevel=_caller_stacklevel(),
            )


def resolve_cache(cache):
    """None -> no cache; "memory" -> memory only; a path or joblib.Memory -> disk too."""
    if cache is None:
        return None
    if isinstance(cache, str) and cache == "memory":
        return EmbeddingCache(None)
    if isinstance(cache, (str, os.PathLike)) and not os.fspath(cache).strip():
        # Path("") is the working directory: an unset variable would fill it silently.
        raise ValueError("cache='' is empty: pass None, 'memory', a folder or a joblib.Memory.")
    location = getattr(cache, "location", cache)  # joblib.Memory
    if location is None:
        return EmbeddingCache(None)
    if hasattr(cache, "location") and not isinstance(cache, (str, Path)):
        location = Path(location) / "skvlm"
    return EmbeddingCache(Path(location).expanduser())


def content_hash(*parts):
    """Hex digest of bytes/str parts, in order."""
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, str):
            part = part.encode("utf-8")
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


# --------------------------------------------------------------------------- maintenance


def _cache_folder(directory):
    """The folder holding the store: ``directory`` itself, or ``directory/skvlm``
    (where a ``joblib.Memory(location=directory)`` cache puts it)."""
    directory = Path(directory).expanduser()
    for folder in (directory, directory / "skvlm"):
        if (folder / _STORE_NAME).is_dir() or any(
            (folder / name).is_file() for name in _LEGACY_FILES
        ):
            return folder
    raise ValueError(
        f"{str(directory)!r} holds no skvlm embedding cache (no {_STORE_NAME!r} folder in it "
        "or in its 'skvlm' sub-folder); pass the folder given as the encoder's cache=."
    )


def _store_files(root):
    """{"entries", "shards", "damaged_shards", "temporary"}: lists of the files skvlm
    wrote under a store root (legacy entries, shards...); nothing else is ever touched."""
    files = {"entries": [], "shards": [], "damaged_shards": [], "temporary": []}
    if not root.is_dir():
        return files
    for folder in root.iterdir():
        if folder.name == _SHARDS and folder.is_dir():
            for path in folder.iterdir():
                if SHARD_NAME.fullmatch(path.name):
                    files["shards"].append(path)
                elif DAMAGED_NAME.fullmatch(path.name):
                    files["damaged_shards"].append(path)
                elif _TEMP_NAME.fullmatch(path.name):
                    files["temporary"].append(path)
            continue
        if not (folder.is_dir() and len(folder.name) == 2):
            continue
        for path in folder.iterdir():
            if _TEMP_NAME.fullmatch(path.name):
                files["temporary"].append(path)
            elif _ENTRY_NAME.fullmatch(path.name) and path.name.startswith(folder.name):
                files["entries"].append(path)
    return files


def _disk_use(path):
    """(bytes on disk, apparent size) of a file; 0s once it is gone (another process)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0, 0
    blocks = getattr(stat, "st_blocks", None)
    return (stat.st_size if blocks is None else blocks * 512), stat.st_size


def _shard_census(shards, verify):
    """(distinct keys in whole shards, unreadable shards, keys with no whole copy or None)."""
    keys, broken, headers = [], 0, []
    for path in shards:
        try:
            shard = Shard.read(path)
        except OSError:
            shard = "unreadable"
        if isinstance(shard, str):
            broken += 1
            continue
        headers.append(shard)
        keys.append(shard.keys)
    distinct = np.unique(np.concatenate(keys)) if keys else np.empty(0, "S20")
    if not verify:
        return distinct.size, broken, None
    whole = set()
    for shard in headers:
        names = shard.key_names()
        with open(shard.path, "rb") as handle:
            read = shard.read_rows(handle, names, np.arange(shard.n))
        whole.update(key for key, vector in read.items() if not isinstance(vector, str))
    return distinct.size, broken, distinct.size - len(whole)


def cache_info(directory, verify=False):
    """Describe an on-disk embedding cache.

    Parameters
    ----------
    directory : str or path
        The folder given as an encoder's ``cache=`` (or a ``joblib.Memory`` location).
    verify : bool, default=False
        Read every entry and check its checksum (slower: reads the whole cache).

    Returns
    -------
    dict
        ``folder``; ``entries`` (distinct embeddings stored); ``files`` (shard and
        entry files); ``bytes`` (the disk space they and any temporary files take,
        in allocated blocks); ``apparent_bytes`` (their sizes); ``temporary_files``
        (left by writers that were killed); ``damaged_files`` (shards set aside as
        damaged); ``damaged`` (with ``verify``: entries with no whole copy, else
        None) and ``legacy_sqlite`` (a pre-0.1 SQLite cache file that is no longer
        read).

    Examples
    --------
    >>> import tempfile
    >>> from skvlm.encoders import CLIPEncoder, cache_info
    >>> folder = tempfile.mkdtemp()
    >>> _ = CLIPEncoder("skvlm-tiny", modality="text", cache=folder).transform(["a red circle"])
    >>> cache_info(folder)["entries"]
    1
    """
    folder = _cache_folder(directory)
    files = _store_files(folder / _STORE_NAME)
    in_shards, broken, damaged = _shard_census(files["shards"], verify)
    legacy_keys = {path.stem for path in files["entries"]}
    if verify:
        legacy_bad = sum(isinstance(_read_entry(path, path.stem), str) for path in files["entries"])
        damaged += legacy_bad + broken
    everything = [path for group in files.values() for path in group]
    use = [_disk_use(path) for path in everything]
    legacy = [folder / name for name in _LEGACY_FILES if (folder / name).is_file()]
    return {
        "folder": str(folder),
        "entries": in_shards + len(legacy_keys),
        "files": len(files["shards"]) + len(files["entries"]),
        "bytes": sum(disk for disk, _ in use),
        "apparent_bytes": sum(size for _, size in use),
        "temporary_files": len(files["temporary"]),
        "damaged_files": len(files["damaged_shards"]) + broken,
        "damaged": damaged,
        "legacy_sqlite": bool(legacy),
    }


def clear_cache(directory):
    """Delete an on-disk embedding cache's entries and temporary files.

    Only files skvlm wrote are removed (entries, temporary files, the legacy SQLite
    file); anything else in the folder is left where it is. The process's memory
    layer for that folder is emptied too.

    Parameters
    ----------
    directory : str or path
        The folder given as an encoder's ``cache=`` (or a ``joblib.Memory`` location).

    Returns
    -------
    dict
        ``folder``, ``entries_removed``, ``files_removed`` and ``bytes_freed``.

    Examples
    --------
    >>> import tempfile
    >>> from skvlm.encoders import CLIPEncoder, cache_info, clear_cache
    >>> folder = tempfile.mkdtemp()
    >>> _ = CLIPEncoder("skvlm-tiny", modality="text", cache=folder).transform(["a", "b"])
    >>> cache_info(folder)["entries"], cache_info(folder)["files"]
    (2, 1)
    >>> clear_cache(folder)["entries_removed"]
    2
    """
    folder = _cache_folder(directory)
    root = folder / _STORE_NAME
    files = _store_files(root)
    entries = cache_info(folder)["entries"]
    legacy = [folder / name for name in _LEGACY_FILES if (folder / name).is_file()]
    removed, freed = 0, 0
    for path in [path for group in files.values() for path in group] + legacy:
        with contextlib.suppress(FileNotFoundError):  # another process got there first
            size = path.stat().st_size
            path.unlink()
            removed, freed = removed + 1, freed + size
    for sub in list(root.iterdir()) if root.is_dir() else []:
        with contextlib.suppress(OSError):  # not empty: it holds files skvlm did not write
            sub.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()
    _memory_layer(folder).clear()
    return {
        "folder": str(folder),
        "entries_removed": entries,
        "files_removed": removed,
        "bytes_freed": freed,
    }
