"""Content-addressed embedding cache: a process-wide memory layer over files on disk.

An embedding's key hashes the encoder's spec (model, weights identity, precision,
augmentation, library versions) and the item's content (the bytes of an image file or
array, or the text), never its position or name: a renamed copy of an image hits, an
edited file misses.

On disk every entry is one small file, ``<dir>/skvlm-embeddings-v2/<key[:2]>/<key>.emb``,
so that a cache folder can be shared between processes and machines, network
filesystems included (where SQLite's locking is unreliable). The format is raw bytes,
read with ``np.frombuffer``, so opening an entry can never run code::

    magic (8 bytes) | n_values (uint32 LE) | blake2b-16(key + payload) | float32 LE payload

Writes go to a temporary file in the same folder and are renamed into place
(``os.replace`` is atomic), so a reader sees a whole entry or none, and two processes
writing the same entry both leave a whole one. No fsync: a write torn by a power loss
fails its checksum and is recomputed, like any other damaged entry. The checksum covers
the key, so a file copied under another entry's name is rejected too. A NaN or inf
output is never stored, and an entry holding one is treated as damaged.
"""

import contextlib
import hashlib
import os
import re
import secrets
import sys
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

_STORE_NAME = "skvlm-embeddings-v2"
_LEGACY_FILES = ("skvlm-embeddings.sqlite", "skvlm-embeddings.sqlite-wal", "skvlm-embeddings.sqlite-shm")
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

    return tuple(str(Path(module).resolve().parent) + os.sep for module in (__file__, sklearn.__file__))


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


def _entry_digest(key, payload):
    digest = hashlib.blake2b(key.encode("ascii"), digest_size=_DIGEST_SIZE)
    digest.update(payload)
    return digest.digest()


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


def _write_atomically(path, data):
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
    # os.open with mode 0o666 honours the umask, as a plain open() would, so a folder
    # shared by a group stays readable by it (mkstemp would make every entry 0600).
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class _DiskLayer:
    """One checksummed file per entry under ``<directory>/skvlm-embeddings-v2``."""

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

    def _path(self, key):
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    def get_many(self, keys):
        found, damaged = {}, []
        for key in keys:
            path = self._path(key)
            vector = _read_entry(path, key)
            if isinstance(vector, str):
                damaged.append((path, vector))
            elif vector is not None:
                found[key] = vector
        if damaged:
            # One warning per call, however many entries: a damaged folder would
            # otherwise print thousands of lines.
            path, reason = damaged[0]
            warnings.warn(
                f"{len(damaged)} damaged embedding cache entr{'y' if len(damaged) == 1 else 'ies'} "
                f"(e.g. {str(path)!r}: {reason}); "
                f"{'it was' if len(damaged) == 1 else 'they were'} recomputed and rewritten.",
                CacheCorruptionWarning,
                stacklevel=_caller_stacklevel(),
            )
        return found

    def put_many(self, items):
        for key, vector in items.items():
            _write_atomically(self._path(key), _encode_entry(key, vector))


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
        raise ValueError(
            "cache='' is empty: pass None, 'memory', a folder or a joblib.Memory."
        )
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
        if (folder / _STORE_NAME).is_dir() or any((folder / name).is_file() for name in _LEGACY_FILES):
            return folder
    raise ValueError(
        f"{str(directory)!r} holds no skvlm embedding cache (no {_STORE_NAME!r} folder in it "
        "or in its 'skvlm' sub-folder); pass the folder given as the encoder's cache=."
    )


def _store_files(root):
    """(entries, temporary files) under a store root; nothing else is ever touched."""
    entries, temporary = [], []
    if not root.is_dir():
        return entries, temporary
    for shard in root.iterdir():
        if not (shard.is_dir() and len(shard.name) == 2):
            continue
        for path in shard.iterdir():
            if _TEMP_NAME.fullmatch(path.name):
                temporary.append(path)
            elif _ENTRY_NAME.fullmatch(path.name) and path.name.startswith(shard.name):
                entries.append(path)
    return entries, temporary


def _size_of(path):
    """A file's size; 0 once it is gone (renamed or removed by another process meanwhile)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


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
        ``folder``, ``entries``, ``bytes`` (entries and temporary files together),
        ``temporary_files`` (left by writers that were killed), ``damaged`` (with
        ``verify``, else None) and ``legacy_sqlite`` (a pre-0.1 SQLite cache file that
        is no longer read).

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
    entries, temporary = _store_files(folder / _STORE_NAME)
    damaged = None
    if verify:
        damaged = sum(isinstance(_read_entry(path, path.stem), str) for path in entries)
    legacy = [folder / name for name in _LEGACY_FILES if (folder / name).is_file()]
    return {
        "folder": str(folder),
        "entries": len(entries),
        "bytes": sum(_size_of(path) for path in entries + temporary),
        "temporary_files": len(temporary),
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
        ``folder``, ``files_removed`` and ``bytes_freed``.

    Examples
    --------
    >>> import tempfile
    >>> from skvlm.encoders import CLIPEncoder, cache_info, clear_cache
    >>> folder = tempfile.mkdtemp()
    >>> _ = CLIPEncoder("skvlm-tiny", modality="text", cache=folder).transform(["a", "b"])
    >>> cache_info(folder)["entries"]
    2
    >>> clear_cache(folder)["files_removed"]
    2
    """
    folder = _cache_folder(directory)
    root = folder / _STORE_NAME
    entries, temporary = _store_files(root)
    legacy = [folder / name for name in _LEGACY_FILES if (folder / name).is_file()]
    removed, freed = 0, 0
    for path in entries + temporary + legacy:
        with contextlib.suppress(FileNotFoundError):  # another process got there first
            size = path.stat().st_size
            path.unlink()
            removed, freed = removed + 1, freed + size
    for shard in list(root.iterdir()) if root.is_dir() else []:
        with contextlib.suppress(OSError):  # not empty: it holds files skvlm did not write
            shard.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()
    _memory_layer(folder).clear()
    return {"folder": str(folder), "files_removed": removed, "bytes_freed": freed}
