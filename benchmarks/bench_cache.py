"""The on-disk embedding cache at scale: disk use, file count, lookups.

Writes ``--n`` entries of ``--dim`` float32 values through the disk layer, in
``put_many`` calls of ``--chunk`` entries (one shard file each), then prints:

- the disk space used (allocated blocks) against the raw float32 bytes, and the
  number of files: goals <= 1.3x and <= 1 file per 100 entries at 1,000,000 entries;
- a cold lookup of ``--lookups`` random keys, in a fresh process (the index is built
  from the shard headers; the OS page cache is whatever the write left): goal <= 2 s;
- a warm lookup of the same keys in that process (index built, memory layer
  emptied), and one served by the memory layer;
- on Linux, the cold lookup again with the shard files dropped from the OS page
  cache first (``posix_fadvise(DONTNEED)`` on those files only): what a cache read
  for the first time since the machine booted costs, disk reads included.

Usage: python benchmarks/bench_cache.py [--small] [--n 1000000] [--dim 512]
[--chunk 10000] [--lookups 10000] [--folder DIR]
(--small: 20,000 entries, a second or two.)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

_LOOKUP = """
import glob, json, os, sys, time
sys.path.insert(0, {root!r})
if {evict!r}:  # drop these files' pages from the OS page cache: reads go to the disk
    for path in glob.glob(os.path.join({folder!r}, "**", "*.shard"), recursive=True):
        handle = os.open(path, os.O_RDONLY)
        os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(handle)
from skvlm._embedding_cache import EmbeddingCache, clear_memory_cache
keys = json.load(open({keys!r}))
start = time.perf_counter()
found = EmbeddingCache({folder!r}).get_many(keys)
cold = time.perf_counter() - start
clear_memory_cache()
start = time.perf_counter()
EmbeddingCache({folder!r}).get_many(keys)
warm_index = time.perf_counter() - start
start = time.perf_counter()
EmbeddingCache({folder!r}).get_many(keys)
memory = time.perf_counter() - start
print(json.dumps([len(found), cold, warm_index, memory]))
"""


def fill(folder, n, dim, chunk, seed=0):
    from skvlm._embedding_cache import _DiskLayer, content_hash

    layer = _DiskLayer(folder)
    rng = np.random.default_rng(seed)
    keys = []
    start = time.perf_counter()
    for first in range(0, n, chunk):
        count = min(chunk, n - first)
        vectors = rng.standard_normal((count, dim), dtype=np.float32)
        batch = {content_hash("bench", str(first + i)): vectors[i] for i in range(count)}
        layer.put_many(batch)
        keys.extend(batch)
    return keys, time.perf_counter() - start


def _lookup_in_a_child(root, keys_file, folder, evict):
    script = _LOOKUP.format(root=root, keys=keys_file, folder=folder, evict=evict)
    run = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    return json.loads(run.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--folder", default=None, help="where to write (default: a temporary one)")
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    if args.small:
        args.n, args.chunk, args.lookups = 20_000, 2_000, 2_000
    from skvlm._embedding_cache import cache_info

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        keys, t_write = fill(folder, args.n, args.dim, args.chunk)
        info = cache_info(folder)
        raw = args.n * args.dim * 4
        print(
            f"{args.n:,} entries of {args.dim} float32 in put_many calls of {args.chunk:,}; "
            f"load average {load:.2f}"
        )
        print(f"  written in {t_write:.1f} s ({args.n / t_write:,.0f} entries/s)")
        print(
            f"  disk used {info['bytes'] / 2**20:,.0f} MiB for {raw / 2**20:,.0f} MiB of raw "
            f"float32 = {info['bytes'] / raw:.3f}x (goal <= 1.3)"
        )
        print(
            f"  {info['files']:,} files = 1 per {args.n / info['files']:,.0f} entries "
            f"(goal: 1 per >= 100); cache_info counts {info['entries']:,} entries"
        )
        picked = np.random.default_rng(1).choice(len(keys), size=args.lookups, replace=False)
        keys_file = os.path.join(folder, "keys.json")
        with open(keys_file, "w") as handle:
            json.dump([keys[i] for i in picked], handle)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        found, cold, warm, memory = _lookup_in_a_child(root, keys_file, folder, evict=False)
        print(
            f"  lookup of {args.lookups:,} keys, fresh process: {cold:.2f} s (goal <= 2 s), "
            f"{found:,} found"
        )
        print(
            f"  same keys again, index built: {warm:.2f} s; from the memory layer: "
            f"{memory * 1e3:.0f} ms"
        )
        if hasattr(os, "posix_fadvise"):
            found, cold, _, _ = _lookup_in_a_child(root, keys_file, folder, evict=True)
            print(
                f"  lookup of {args.lookups:,} keys, fresh process, shards dropped from the "
                f"page cache: {cold:.2f} s, {found:,} found"
            )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
