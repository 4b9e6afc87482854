"""Shard files of the on-disk embedding cache: many entries per immutable file.

Each ``put_many`` writes one shard, ``<store>/shards/<time_ns>-<random>.shard``,
through a temporary file and an atomic rename, and never touches it again: two
processes (or machines, over a network filesystem) writing at once write two files.
The index is the folder listing: a reader lists the shard names and reads the header
of each shard it has not seen yet, once per process. The keys of the headers are
searched all at once (see :class:`_Index`: sorted 8-byte key prefixes, one
``np.searchsorted`` per run of them, no Python loop per stored entry), and the rows
wanted are asked of the OS before the first is read, so that a cold page cache serves
them in parallel. Newer shards win, so a damaged entry that was recomputed is found,
whole, in the newer shard that holds it.

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
# Past this many runs (a new shard is one), the index merges them into one sorted run.
_MAX_RUNS = 256


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

    def __init__(self, path, n, dim, keys, digests, signature=None):
        self.path = path
        self.n, self.dim = n, dim
        self.keys = np.frombuffer(keys, dtype=f"S{KEY_BYTES}")
        self.digests = digests
        self.data_offset = _FIXED + n * (KEY_BYTES + DIGEST_BYTES)
        self.signature = signature  # (size, mtime, inode) when the header was read
        self.sid = None  # its number in the index that holds it

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
        view = memoryview(rest)
        keys, digests = view[: n * KEY_BYTES], rest[n * KEY_BYTES :]
        if fixed[16:_FIXED] != _header_digest(fixed[:16], keys, digests):
            return "header checksum mismatch"
        return cls(path, n, dim, keys, digests, _signature(stat))

    def key_names(self):
        """The keys as the 40 hex digits callers use (``S20`` items lose trailing NULs)."""
        raw = self.keys.tobytes()
        return [raw[i : i + KEY_BYTES].hex() for i in range(0, len(raw), KEY_BYTES)]

    def read_rows(self, handle, keys, rows):
        """key -> vector, or key -> why that entry is damaged, for ``rows`` of this shard."""
        width, fd = 4 * self.dim, handle.fileno()
        payloads, reasons, blank = [], {}, bytes(width)
        for key, row in sorted(zip(keys, np.asarray(rows).tolist()), key=lambda kr: kr[1]):
            payload = os.pread(fd, width, self.data_offset + row * width)  # in file order
            if len(payload) != width:
                reasons[key] = f"truncated ({len(payload)} of {width} payload bytes)"
            elif (
                entry_digest(key, payload)
                != self.digests[row * DIGEST_BYTES : (row + 1) * DIGEST_BYTES]
            ):
                reasons[key] = "checksum mismatch"
            payloads.append((key, payload if key not in reasons else blank))
        block = np.frombuffer(b"".join(payload for _, payload in payloads), dtype="<f4")
        block = block.reshape(len(payloads), self.dim).astype(np.float32, copy=False)
        finite = np.isfinite(block).all(axis=1).tolist()  # one pass over every row read
        out = {}
        for (key, _), row, whole in zip(payloads, block, finite):
            if key in reasons:
                out[key] = reasons[key]
            else:
                out[key] = row if whole else "non-finite values (NaN or inf)"
        return out


def _signature(stat):
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def key_prefixes(keys):
    """The first 8 bytes of each key of an ``S20`` array, as integers in the keys' order."""
    keys = np.ascontiguousarray(keys, dtype=f"S{KEY_BYTES}")
    if keys.size == 0:
        return np.empty(0, dtype=np.uint64)
    first = np.ndarray(keys.size, dtype=">u8", buffer=keys, strides=(KEY_BYTES,))
    return first.astype(np.uint64)


def _groups(labels):
    """(label, positions) for each distinct value of an integer array."""
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if order.size else []
    stops = [*starts[1:], order.size]
    for start, stop in zip(starts, stops):
        yield int(ordered[start]), order[start:stop]


class _Run:
    """Sorted key prefixes, each with the shard (``sid``) and row of its entry."""

    def __init__(self, prefixes, sids, rows):
        self.prefixes, self.sids, self.rows = prefixes, sids, rows

    @classmethod
    def of_shard(cls, shard):
        n = shard.n  # a shard's keys are sorted: so are their prefixes
        return cls(shard.prefixes, np.full(n, shard.sid, np.int32), np.arange(n, dtype=np.uint32))

    @classmethod
    def merged(cls, runs):
        prefixes = np.concatenate([run.prefixes for run in runs])
        order = np.argsort(prefixes)
        sids = np.concatenate([run.sids for run in runs])[order]
        return cls(prefixes[order], sids, np.concatenate([run.rows for run in runs])[order])

    def without(self, sids):
        keep = ~np.isin(self.sids, sids)
        return _Run(self.prefixes[keep], self.sids[keep], self.rows[keep])

    def copies(self, prefixes, order):
        """(query positions, sids, rows) of the entries whose prefix is a query's;
        ``order`` sorts ``prefixes`` (a search for sorted values is faster)."""
        ordered, n = prefixes[order], self.prefixes.size
        low = np.searchsorted(self.prefixes, ordered)
        query, at = np.empty(0, np.intp), np.empty(0, np.intp)
        step = 0
        while True:  # the first entry of each prefix found, then any that repeat it
            look = low + step
            inside = np.flatnonzero(look < n)
            hit = inside[self.prefixes[look[inside]] == ordered[inside]]
            if hit.size == 0:
                break
            query, at = np.r_[query, order[hit]], np.r_[at, look[hit]]
            low, ordered, order, step = low[hit], ordered[hit], order[hit], step + 1
        return query, self.sids[at], self.rows[at]


class _Index:
    """Every indexed shard's keys, for a vectorised search: a few sorted runs.

    A shard's keys are sorted when written, so each new shard is a run of its own,
    searched with one ``np.searchsorted``; past ``_MAX_RUNS`` runs they are merged
    into one (a sort of every prefix), so a store of many small shards still costs a
    few searches per lookup. Immutable: a refresh builds a new index, so a reader
    keeps a consistent snapshot while another thread refreshes.
    """

    def __init__(self, runs, shards):
        self.runs, self.shards = runs, shards  # shards: sid -> Shard
        by_name = sorted(shards.values(), key=lambda shard: shard.path.name)
        self.newness = np.zeros(max(shards, default=-1) + 1, dtype=np.int64)
        self.newness[[shard.sid for shard in by_name]] = np.arange(len(by_name))

    @classmethod
    def empty(cls):
        return cls([], {})

    def with_shards(self, added):
        """This index and the entries of the shards ``added`` (each with its ``sid``)."""
        if not added:
            return self
        runs = self.runs + [_Run.of_shard(shard) for shard in added]
        if len(runs) > _MAX_RUNS:
            runs = [_Run.merged(runs)]
        return _Index(runs, {**self.shards, **{shard.sid: shard for shard in added}})

    def without(self, sids):
        """This index less the entries of the shards numbered ``sids``."""
        if not sids:
            return self
        runs = [run.without(list(sids)) for run in self.runs]
        shards = {sid: shard for sid, shard in self.shards.items() if sid not in sids}
        return _Index([run for run in runs if run.prefixes.size], shards)

    def copies(self, queries):
        """(query positions, sids, rows, depths) of every stored copy of the ``queries``.

        Depth 0 is a key's copy in the newest shard that holds it, 1 the one before:
        almost every key is stored once, but a damaged entry recomputed, or two
        processes writing the same items, leave several copies, and an older one is
        read only if the newer ones are damaged.
        """
        prefixes = key_prefixes(queries)
        order = np.argsort(prefixes)
        parts = [run.copies(prefixes, order) for run in self.runs]
        query, sids, rows = (np.concatenate(part) for part in zip(*parts))
        same = np.zeros(query.size, dtype=bool)  # the whole key, not just its prefix
        for sid, members in _groups(sids):
            same[members] = self.shards[sid].keys[rows[members]] == queries[query[members]]
        query, sids, rows = query[same], sids[same], rows[same]
        order = np.lexsort((-self.newness[sids], query))
        query, sids, rows = query[order], sids[order], rows[order]
        starts = np.flatnonzero(np.diff(query, prepend=-1))  # each query's first copy
        depth = np.arange(query.size) - np.repeat(starts, np.diff(np.r_[starts, query.size]))
        return query, sids, rows, depth


class ShardStore:
    """The shards of one folder: an index refreshed by listing it, reads and writes.

    One instance per folder and process (see :func:`shard_store`), shared by threads.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self._shards = {}  # name -> Shard
        self._index = _Index.empty()
        self._next_sid = 0
        self._lock = threading.Lock()

    def _listing(self):
        try:
            return os.listdir(self.folder)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def refresh(self):
        """Index the shards written since the last call: (the index, [(path, reason)]
        of the damaged shards found)."""
        names = {name for name in self._listing() if SHARD_NAME.fullmatch(name)}
        damaged, added = [], []
        with self._lock:
            gone = {self._shards.pop(name).sid for name in set(self._shards) - names}
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
                    continue
                shard.sid, self._next_sid = self._next_sid, self._next_sid + 1
                shard.prefixes = key_prefixes(shard.keys)
                self._shards[name] = shard
                added.append(shard)
            self._index = self._index.without(gone).with_shards(added)
            return self._index, damaged

    def get_many(self, keys):
        """(key -> vector for the keys found whole, [(where, why)] of damaged entries)."""
        keys = [key for key in keys if _KEY_NAME.fullmatch(key)]
        damaged = []
        for attempt in range(5):  # a shard changed under the reader: look again
            index, newly_damaged = self.refresh()
            damaged += newly_damaged
            found = self._lookup(index, keys, recheck=attempt < 4)
            if found is not None:
                return found[0], damaged + found[1]

    @staticmethod
    def _prefetch(index, sids, rows):
        """Ask the OS for every entry to be read, before reading the first: on a cold
        page cache the disk then serves them in parallel, not one seek at a time."""
        if not hasattr(os, "posix_fadvise"):
            return
        for sid, members in _groups(sids):
            shard = index.shards[sid]
            width = 4 * shard.dim
            try:
                fd = os.open(shard.path, os.O_RDONLY)
            except OSError:
                continue  # reported, if it matters, when it is read
            try:
                for row in rows[members].tolist():
                    offset = shard.data_offset + row * width
                    os.posix_fadvise(fd, offset, width, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)

    def _lookup(self, index, keys, recheck=True):
        """(found, damaged) from the ``index``; None if one of its shards changed."""
        found, bad = {}, {}  # bad: key -> (where, why) unless an older copy is whole
        if not keys or not index.runs:
            return found, []
        queries = np.frombuffer(bytes.fromhex("".join(keys)), dtype=f"S{KEY_BYTES}")
        query, sids, rows, depth = index.copies(queries)
        pending = np.ones(len(keys), dtype=bool)
        for level in range(int(depth.max(initial=-1)) + 1):  # newest copies first
            at = np.flatnonzero(depth == level)
            at = at[pending[query[at]]]
            self._prefetch(index, sids[at], rows[at])
            for sid, members in _groups(sids[at]):
                shard, members = index.shards[sid], at[members]
                wanted = [keys[i] for i in query[members].tolist()]
                read = self._read(shard, wanted, rows[members], recheck)
                if read is None:
                    return None
                for position, key in zip(query[members].tolist(), wanted):
                    value = read.get(key)  # None: the shard is gone (an older copy may do)
                    if isinstance(value, str):
                        bad.setdefault(key, (f"{shard.path} entry {key}", value))
                    elif value is not None:
                        found[key] = value
                        pending[position] = False
                        bad.pop(key, None)
        return found, list(bad.values())

    def _read(self, shard, keys, rows, recheck):
        """``shard.read_rows`` for ``keys``; {} if it is gone, None if it changed."""
        try:
            with open(shard.path, "rb") as handle:
                if recheck and _signature(os.fstat(handle.fileno())) != shard.signature:
                    # Shards are never rewritten: something else changed this one
                    # since its header was read. Index it again, from scratch.
                    self._forget(shard)
                    return None
                return shard.read_rows(handle, keys, rows)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            return {key: f"unreadable ({exc.strerror or exc})" for key in keys}

    def _forget(self, shard):
        with self._lock:
            if self._shards.get(shard.path.name) is shard:
                del self._shards[shard.path.name]
                self._index = self._index.without({shard.sid})

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
