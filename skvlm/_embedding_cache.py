"""Content-addressed embedding cache: a process-wide memory layer over SQLite on disk.

An embedding's key hashes the encoder's spec (model, weights identity, precision,
preprocessing, augmentation) and the item's content (the bytes of an image file or
array, or the text), never its position or name: a renamed copy of an image hits,
an edited file misses. The disk layer is one SQLite file per cache directory (WAL
mode), so a million images do not become a million files and several processes
(Dask workers, ``n_jobs``) can share it.
"""

import hashlib
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

_DB_NAME = "skvlm-embeddings.sqlite"
_MEMORY_LIMIT_BYTES = 1 << 30  # the memory layer's bound: 1 GiB of vectors


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


class _DiskLayer:
    """Vectors in one SQLite table keyed by their content hash."""

    def __init__(self, directory):
        self.path = Path(directory) / _DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB)"
            )
            self._local.connection = connection
        return connection

    def get_many(self, keys):
        found = {}
        connection = self._connection()
        keys = list(keys)
        for start in range(0, len(keys), 500):  # SQLite caps the number of parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = connection.execute(
                f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    def put_many(self, items):
        connection = self._connection()
        with connection:  # one transaction: all rows land or none do
            connection.executemany(
                "INSERT OR IGNORE INTO embeddings (key, vector) VALUES (?, ?)",
                [(key, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for key, v in items.items()],
            )


class EmbeddingCache:
    """Memory layer, plus a disk layer when a directory is given."""

    def __init__(self, directory=None):
        self.directory = directory
        self.disk = _DiskLayer(directory) if directory is not None else None
        self.memory = _memory_layer(directory)

    def get_many(self, keys):
        found = self.memory.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing and self.disk is not None:
            from_disk = self.disk.get_many(missing)
            self.memory.put_many(from_disk)
            found.update(from_disk)
        return found

    def put_many(self, items):
        self.memory.put_many(items)
        if self.disk is not None:
            self.disk.put_many(items)


def resolve_cache(cache):
    """None -> no cache; "memory" -> memory only; a path or joblib.Memory -> disk too."""
    if cache is None:
        return None
    if isinstance(cache, str) and cache == "memory":
        return EmbeddingCache(None)
    location = getattr(cache, "location", cache)  # joblib.Memory
    if location is None:
        return EmbeddingCache(None)
    if hasattr(cache, "location") and not isinstance(cache, (str, Path)):
        location = Path(location) / "skvlm"
    return EmbeddingCache(Path(location))


def content_hash(*parts):
    """Hex digest of bytes/str parts, in order."""
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, str):
            part = part.encode("utf-8")
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()
