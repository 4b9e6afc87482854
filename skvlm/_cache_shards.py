"""Shard files of the on-disk embedding cache: many entries per immutable file.

Each ``put_many`` writes one shard, ``<store>/shards/<time_ns>-<random>.shard``,
through a temporary file and an atomic rename, and never touches it again: two
processes (or machines, over a network filesystem) writing at once write two files.
The index is the folder listing: a reader lists the shard names, reads the header of
each shard it has not seen yet, and looks keys up with a binary search over the
sorted keys of each header. Newer shards win, so a damaged entry that was recomputed
is found, whole, in the newer shard that holds it.

Layout of a shard, all little-endian, read with ``np.frombuffer`` (never unpickled)::

    magic "SKVLMSH1" (8) | n entries (uint32) | dim (uint32)
    | blake2b-16 of (magic, n, dim, keys, entry digests)
    | n keys (20 bytes each, sorted) | n entry digests (16 bytes each)
    | n x dim float32 payload

An entry's digest is blake2b-16(key, payload), as in the one-file-per-entry store, so
a payload moved under another key fails its checksum; the header digest covers the
keys and the entry digests, so a flipped key byte is detected too. A shard whose
header is damaged (or that is too short to hold its own header) is renamed
``*.damaged`` after it is reported, so that it is reported once, not by every later
process; the entries of a shard cut short after its header are checked one by one.
"""

import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
from pathlib import Path

import numpy as np

MAGIC = b"SKVLMSH1"
KEY_BYTES = 20
DIGEST_BYTES = 16
_FIXED = len(MAGIC) + 4 + 4 + DIGEST_BYTES
SHARD_NAME = re.compile(r"[0-9]{20}-[0-9a-f]{16}\.shard")
DAMAGED_NAME = re.compile(r"[0-9]{20}-[0-9a-f]{16}\.shard\.damaged")
TEMP_PREFIX = ".tmp-"
TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{16}")
_KEY_NAME = re.compile(r"[0-9a-f]{40}")


def entry_digest(key, payload):
    """The checksum of one entry: it covers the key, so a moved payload fails it."""
    digest = hashlib.blake2b(key.encode("ascii"), digest_size=DIGEST_BYTES)
    digest.update(payload)
    return digest.digest()


def _header_digest(head, keys, digests):
    digest = hashlib.blake2b(head, digest_size=DIGEST_BYTES)
    digest.update(keys)
    digest.update(digests)
    return digest.digest()


def encode_shard(items):
    """The bytes of one shard holding ``items`` (key -> vector, all of one length)."""
    keys = sorted(items)
    for key in keys:
        if not _KEY_NAME.fullmatch(key):
            raise ValueError(f"An embedding cache key is 40 hex digits, got {key!r}.")
    payload = np.stack([np.asarray(items[key], dtype="<f4").ravel() for key in keys])
    n, dim = payload.shape
    key_block = b"".join(bytes.fromhex(key) for key in keys)
    digests = b"".join(entry_digest(key, row.tobytes()) for key, row in zip(keys, payload))
    head = MAGIC + n.to_bytes(4, "little") + dim.to_bytes(4, "little")
    return head + _header_digest(head, key_block, digests) + key_block + digests + payload.tobytes()


def write_atomically(path, data):
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    # os.open with mode 0o666 honours the umask, as a plain open() would, so a folder
    # shared by a group stays readable by it (mkstemp would make every file 0600).
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class Shard:
    """The header of one shard: its sorted keys, their digests, where the payload is."""

    def __init__(self, path, data, signature=None):
        self.path = path
        self.signature = signature  # (size, mtime, inode) when the header was read
        self.n = int.from_bytes(data[8:12], "little")
        self.dim = int.from_bytes(data[12:16], "little")
        keys_end = _FIXED + self.n * KEY_BYTES
        self.keys = np.frombuffer(data[_FIXED:keys_end], dtype=f"S{KEY_BYTES}")
        self.digests = data[keys_end : keys_end + self.n * DIGEST_BYTES]
        self.data_offset = keys_end + self.n * DIGEST_BYTES

    @classmethod
    def read(cls, path):
        """The shard's header, or a string saying why it is damaged."""
        with open(path, "rb") as handle:
            fixed = handle.read(_FIXED)
            if len(fixed) < _FIXED or fixed[: len(MAGIC)] != MAGIC:
                return f"not an skvlm cache shard ({len(fixed)} bytes read, bad header)"
            n = int.from_bytes(fixed[8:12], "little")
            dim = int.from_bytes(fixed[12:16], "little")
            stat = os.fstat(handle.fileno())
            size = stat.st_size
            index_end = _FIXED + n * (KEY_BYTES + DIGEST_BYTES)
            expected = index_end + n * 4 * dim
            # A shard cut short (a write torn by a power loss) keeps the entries that
            # are whole: each one is checked against its own digest when read.
            if size < index_end or size > expected:
                return (
                    f"{'truncated' if size < expected else 'too long'} ({size} of {expected} bytes)"
                )
            rest = handle.read(n * (KEY_BYTES + DIGEST_BYTES))
        keys, digests = rest[: n * KEY_BYTES], rest[n * KEY_BYTES :]
        if fixed[16:_FIXED] != _header_digest(fixed[:16], keys, digests):
            return "header checksum mismatch"
        return cls(path, fixed + rest, _signature(stat))

    def rows_of(self, queries):
        """(positions in ``queries`` found here, their rows in this shard)."""
        if self.n == 0:
            return np.empty(0, np.intp), np.empty(0, np.intp)
        rows = np.minimum(np.searchsorted(self.keys, queries), self.n - 1)
        hit = np.flatnonzero(self.keys[rows] == queries)
        return hit, rows[hit]

    def read_rows(self, handle, keys, rows):
        """key -> vector, or key -> why that entry is damaged, for ``rows`` of this shard."""
        out = {}
        width = 4 * self.dim
        for key, row in zip(keys, rows):
            payload = os.pread(handle.fileno(), width, self.data_offset + int(row) * width)
            expected = self.digests[row * DIGEST_BYTES : (row + 1) * DIGEST_BYTES]
            if len(payload) != width:
                out[key] = f"truncated ({len(payload)} of {width} payload bytes)"
            elif entry_digest(key, payload) != expected:
                out[key] = "checksum mismatch"
            else:
                vector = np.frombuffer(payload, dtype="<f4").astype(np.float32)
                finite = np.isfinite(vector).all()
                out[key] = vector if finite else "non-finite values (NaN or inf)"
        return out


def _signature(stat):
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


class ShardStore:
    """The shards of one folder: an index refreshed by listing it, reads and writes.

    One instance per folder and process (see :func:`shard_store`), shared by threads.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self._shards = {}  # name -> Shard
        self._lock = threading.Lock()

    def _listing(self):
        try:
            return os.listdir(self.folder)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def refresh(self):
        """Index the shards written since the last call; [(path, reason)] of damaged ones."""
        names = {name for name in self._listing() if SHARD_NAME.fullmatch(name)}
        damaged = []
        with self._lock:
            for gone in set(self._shards) - names:
                del self._shards[gone]
            for name in sorted(names - set(self._shards)):
                path = self.folder / name
                try:
                    shard = Shard.read(path)
                except FileNotFoundError:
                    continue  # removed meanwhile (clear_cache in another process)
                except OSError as exc:
                    shard = f"unreadable ({exc.strerror or exc})"
                if isinstance(shard, str):
                    damaged.append((path, shard))
                    _quarantine(path)
                else:
                    self._shards[name] = shard
            return sorted(self._shards.values(), key=lambda s: s.path.name, reverse=True), damaged

    def get_many(self, keys):
        """(key -> vector for the keys found whole, [(where, why)] of damaged entries)."""
        keys = [key for key in keys if _KEY_NAME.fullmatch(key)]
        damaged = []
        for attempt in range(5):  # a shard changed under the reader: look again
            shards, newly_damaged = self.refresh()
            damaged += newly_damaged
            found = self._lookup(shards, keys, recheck=attempt < 4)
            if found is not None:
                return found[0], damaged + found[1]

    def _lookup(self, shards, keys, recheck=True):
        """(found, damaged) from ``shards``, newest first; None if one of them changed."""
        found, bad = {}, {}  # bad: key -> (where, why) unless an older shard has it whole
        if not keys or not shards:
            return found, []
        queries = np.array([bytes.fromhex(key) for key in keys], dtype=f"S{KEY_BYTES}")
        pending = np.ones(len(keys), dtype=bool)
        for shard in shards:
            if not pending.any():
                break
            hit, rows = shard.rows_of(queries)
            keep = pending[hit]
            hit, rows = hit[keep], rows[keep]
            if hit.size == 0:
                continue
            wanted = [keys[i] for i in hit]
            try:
                with open(shard.path, "rb") as handle:
                    if recheck and _signature(os.fstat(handle.fileno())) != shard.signature:
                        # Shards are never rewritten: something else changed this one
                        # since its header was read. Index it again, from scratch.
                        self._forget(shard)
                        return None
                    read = shard.read_rows(handle, wanted, rows)
            except FileNotFoundError:
                continue
            except OSError as exc:
                read = {key: f"unreadable ({exc.strerror or exc})" for key in wanted}
            for index, key in zip(hit, wanted):
                if isinstance(read[key], str):
                    bad.setdefault(key, (f"{shard.path} entry {key}", read[key]))
                else:
                    found[key] = read[key]
                    pending[index] = False
                    bad.pop(key, None)
        return found, list(bad.values())

    def _forget(self, shard):
        with self._lock:
            if self._shards.get(shard.path.name) is shard:
                del self._shards[shard.path.name]

    def put_many(self, items):
        """Write ``items`` as one shard per vector length (usually exactly one)."""
        by_dim = {}
        for key, vector in items.items():
            by_dim.setdefault(np.asarray(vector).size, {})[key] = vector
        for group in by_dim.values():
            name = f"{time.time_ns():020d}-{secrets.token_hex(8)}.shard"
            write_atomically(self.folder / name, encode_shard(group))


def _quarantine(path):
    """Rename a shard whose header is damaged, so that later readers skip it quietly."""
    with contextlib.suppress(OSError):  # read-only folder: it is reported again next time
        os.replace(path, path.with_name(path.name + ".damaged"))


_STORES = {}
_STORES_LOCK = threading.Lock()


def shard_store(folder):
    """The process-wide :class:`ShardStore` of ``folder``."""
    key = str(Path(folder).resolve())
    with _STORES_LOCK:
        return _STORES.setdefault(key, ShardStore(folder))
