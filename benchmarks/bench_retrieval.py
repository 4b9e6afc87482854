"""mAP of many queries against a large gallery: skvlm vs a per-query sklearn loop.

    python benchmarks/bench_retrieval.py                  # 10,000 x 200,000, 512-d
    python benchmarks/bench_retrieval.py --n-queries 1000 --n-gallery 20000

skvlm's ``mean_average_precision`` scores ``batch_size`` queries at a time and ranks
only the relevant items exactly, so its extra memory is about
``4 * batch_size * n_gallery`` bytes plus a unit-row float32 copy of the gallery. The baseline is what people write by hand:
for each query, the cosine row ``gallery @ q`` and
``sklearn.metrics.average_precision_score``. The baseline is timed on
``--baseline-queries`` queries and extrapolated linearly to all queries (each
query costs the same), which the output says. Peak memory is the largest amount
of memory numpy allocated during the call beyond the inputs (``tracemalloc``).
The time of the chunked score matrix alone (one float32 matmul per chunk) is
printed as the floor. One run, printed; the figures go to the README's
performance section.
"""

import argparse
import time
import tracemalloc

import numpy as np
from sklearn.metrics import average_precision_score

from skvlm.retrieval import mean_average_precision


def make_embeddings(n_queries, n_gallery, n_features, n_classes, noise, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, n_features), dtype=np.float32)

    def draw(n):
        labels = rng.integers(0, n_classes, n)
        rows = centres[labels]
        rows += noise * rng.standard_normal((n, n_features), dtype=np.float32)
        return rows, labels

    queries, query_labels = draw(n_queries)
    gallery, gallery_labels = draw(n_gallery)
    return queries, query_labels, gallery, gallery_labels


def baseline_map(queries, query_labels, gallery, gallery_labels):
    gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    aps = []
    for query, label in zip(queries, query_labels):
        scores = gallery @ (query / np.linalg.norm(query))
        aps.append(average_precision_score(gallery_labels == label, scores))
    return float(np.mean(aps))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-queries", type=int, default=10_000)
    parser.add_argument("--n-gallery", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=512)
    parser.add_argument("--n-classes", type=int, default=1000)
    parser.add_argument(
        "--noise",
        type=float,
        default=2.5,
        help="within-class spread; 2.5 gives a CLIP-like mAP of about 0.4",
    )
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--baseline-queries", type=int, default=50)
    parser.add_argument(
        "--small",
        action="store_true",
        help="200 queries x 5,000 gallery items: a second (make bench, tests)",
    )
    args = parser.parse_args()
    if args.small:
        args.n_queries, args.n_gallery, args.n_classes, args.baseline_queries = 200, 5000, 50, 10

    queries, query_labels, gallery, gallery_labels = make_embeddings(
        args.n_queries, args.n_gallery, args.n_features, args.n_classes, args.noise
    )
    print(
        f"{args.n_queries:,} queries x {args.n_gallery:,} gallery items, "
        f"{args.n_features}-d float32, {args.n_classes} classes, batch_size={args.batch_size}"
    )

    tracemalloc.start()
    start = time.perf_counter()
    value = mean_average_precision(
        queries, query_labels, gallery, gallery_labels, batch_size=args.batch_size
    )
    ours = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"skvlm mean_average_precision: {ours:.1f} s, mAP {value:.4f}, "
        f"peak extra memory {peak / 2**20:.0f} MiB"
    )

    # The floor: the chunked score matrix alone, which any exact method must compute.
    buffer = np.empty((min(args.batch_size, args.n_queries), args.n_gallery), dtype=np.float32)
    start = time.perf_counter()
    for first in range(0, args.n_queries, args.batch_size):
        chunk = queries[first : first + args.batch_size]
        np.matmul(chunk, gallery.T, out=buffer[: chunk.shape[0]])
    floor = time.perf_counter() - start
    del buffer
    print(
        f"floor (the {args.n_queries:,} x {args.n_gallery:,} score matrix, chunked "
        f"matmul only): {floor:.1f} s; ranking and AP add {ours - floor:.1f} s"
    )

    n_base = min(args.baseline_queries, args.n_queries)
    start = time.perf_counter()
    base_value = baseline_map(queries[:n_base], query_labels[:n_base], gallery, gallery_labels)
    base = (time.perf_counter() - start) / n_base * args.n_queries
    check = mean_average_precision(queries[:n_base], query_labels[:n_base], gallery, gallery_labels)
    print(
        f"per-query sklearn loop: {base:.0f} s (timed on {n_base} queries, extrapolated "
        f"to {args.n_queries:,}); mAP on those {base_value:.6f} vs skvlm {check:.6f}"
    )
    print(f"speed-up: {base / ours:.1f}x")


if __name__ == "__main__":
    main()
