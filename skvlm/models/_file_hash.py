"""Content hashes of large local files (checkpoints), memoised on disk.

Hashing a 600 MB checkpoint takes about as long as loading it, and a cache key needs
the hash in every new process. The memo is keyed by the file's real path and its
(size, mtime, inode, ctime): any rewrite changes the inode or the ctime (which
``utime`` cannot set back), so a stale hash is never served. The memo lives in
``$XDG_CACHE_HOME/skvlm/file-hashes`` (``~/.cache`` by default), one small file per
checkpoint written atomically; if it cannot be written the hash is only kept in memory.
"""

import contextlib
import hashlib
import os
import re
import secrets
import threading
from pathlib import Path

_MEMORY = {}
_LOCK = threading.Lock()
_DIGEST = re.compile(r"[0-9a-f]{40}")


def _memo_folder():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "skvlm" / "file-hashes"


def _signature(path):
    stat = os.stat(path)
    return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)


def _hash_file(path):
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_memo(memo):
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = memo.read_text(encoding="ascii").strip()
        if _DIGEST.fullmatch(text):
            return text
    return None


def _write_memo(memo, value):
    with contextlib.suppress(OSError):
        memo.parent.mkdir(parents=True, exist_ok=True)
        temporary = memo.parent / f".tmp-{secrets.token_hex(8)}"
        temporary.write_text(value, encoding="ascii")
        os.replace(temporary, memo)


def file_content_hash(path):
    """blake2b-160 hex digest of a file's bytes, read once per version of the file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(delete=False) as handle:
    ...     _ = handle.write(b"weights")
    >>> file_content_hash(handle.name) == file_content_hash(handle.name)
    True
    """
    signature = _signature(path)
    with _LOCK:
        if signature in _MEMORY:
            return _MEMORY[signature]
    memo = _memo_folder() / hashlib.blake2b(repr(signature).encode(), digest_size=20).hexdigest()
    value = _read_memo(memo)
    if value is None:
        value = _hash_file(path)
        if _signature(path) != signature:  # rewritten while it was read: do not memoise
            return value
        _write_memo(memo, value)
    with _LOCK:
        _MEMORY[signature] = value
    return value
