"""Timing shared by the benchmark scripts (run as ``python benchmarks/bench_*.py``)."""

import time


def best_of(repeat, run):
    """(shortest time in seconds, result) over ``repeat`` runs: the machine may be shared."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result
