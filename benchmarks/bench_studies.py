"""The tuned few-shot study vs the untuned one, per method, side by side in one run.

For each method of the study, one (shots, seed) of ``run_fewshot_study`` with a fixed
test split, untuned (fit at the defaults + predict the test rows) and tuned
(``select_params`` over the default grid on ``min(k, 4)`` validation shots per class,
refit, predict): the seconds the study records for the method and the peak traced
memory of the call (tracemalloc), and their tuned / untuned ratios (time: best of
``--repeat`` calls, untraced ones first). Issue 13's goal:
tuning costs at most 5x an untuned fit + predict, and memory stays bounded by the
classifiers' batch size (the validation scores are a small matrix; the test scores are
predicted in batches in both cases).

Default size (issue 13): 16 shots x 1000 classes x 512-d support (16,000 rows; the pool
also holds the 4,000 validation rows) and 50,000 test rows, synthetic CLIP-like unit
features with a text classifier. No timed assertions anywhere.

Usage: python benchmarks/bench_studies.py [--small] [--methods m,m] [--search reference]
[--selection one_se|paired]
(--small: 16 shots x 100 classes x 256-d, 5,000 test rows, seconds. ``--selection paired``
adds a fit and validation predictions of the defaults and of the best combination.)
"""

import argparse
import platform
import tracemalloc

import numpy as np

from skvlm.classifiers._search import SELECTIONS
from skvlm.studies import run_fewshot_study
from skvlm.studies._methods import REGISTRY

_METHODS = (
    "zeroshot",
    "prototype",
    "prototype_pca",
    "lda",
    "tip_adapter",
    "tip_x",
    "ape",
    "coder",
    "linear_probe",
)


def _unit(X):
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def make_data(n_classes, dim, shots, n_test, seed=0):
    """Pool (shots + min(shots, 4) rows per class), a test split and text weights."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(n_classes, dim)))
    per_class = shots + min(shots, 4)
    y = np.repeat(np.arange(n_classes), per_class)
    X = _unit(centres[y] + rng.normal(scale=3.0 / np.sqrt(dim), size=(len(y), dim)))
    y_test = rng.integers(0, n_classes, n_test)
    X_test = _unit(centres[y_test] + rng.normal(scale=3.0 / np.sqrt(dim), size=(n_test, dim)))
    W = _unit(centres + rng.normal(scale=2.0 / np.sqrt(dim), size=centres.shape))
    return X, y, X_test, y_test, W


def run_one(method, data, shots, seed, tune, search, repeat, selection="best"):
    """Best of ``repeat`` study calls (the machine may be shared); peak memory of the last."""
    X, y, X_test, y_test, W = data

    def study():
        return run_fewshot_study(
            X,
            y,
            X_test=X_test,
            y_test=y_test,
            text_weights=W,
            pca_text_embeddings=W,
            methods=[method],
            shots=[shots],
            seeds=[seed],
            tune=tune,
            search=search,
            selection=selection,
        ).iloc[0]

    seconds = [float(study()["seconds"]) for _ in range(repeat - 1)]
    tracemalloc.start()
    row = study()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    seconds.append(float(row["seconds"]))  # traced: slower, so min() prefers the others
    return {
        "seconds": min(seconds),
        "peak_mb": peak / 2**20,
        "acc1": float(row["acc1"]),
        "params": row["params"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--methods", default=",".join(_METHODS))
    parser.add_argument("--search", default="default", choices=["default", "reference"])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--selection", default="best", choices=SELECTIONS)
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="best of N calls per cell (default: 3 with --small, else 1)",
    )
    args = parser.parse_args(argv)
    n_classes, dim, n_test = (100, 256, 5000) if args.small else (1000, 512, 50000)
    shots = 16
    repeat = args.repeat or (3 if args.small else 1)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in REGISTRY]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(REGISTRY)}")
    data = make_data(n_classes, dim, shots, n_test)
    print(
        f"bench_studies: {shots} shots x {n_classes} classes x {dim}-d support "
        f"({shots * n_classes} rows, + {min(shots, 4) * n_classes} validation rows), "
        f"{n_test} test rows, grids={args.search!r}, selection={args.selection!r}; "
        f"numpy {np.__version__}, {platform.processor() or platform.machine()}"
    )
    print(
        f"{'method':>14} {'seed':>4} {'untuned s':>10} {'tuned s':>9} {'ratio':>6} "
        f"{'untuned MB':>11} {'tuned MB':>9} {'acc untuned':>11} {'acc tuned':>9}  chosen"
    )
    for method in methods:
        for seed in [int(s) for s in args.seeds.split(",")]:
            plain = run_one(method, data, shots, seed, False, args.search, repeat)
            tuned = run_one(method, data, shots, seed, True, args.search, repeat, args.selection)
            chosen = ", ".join(f"{k}={v:g}" for k, v in tuned["params"].items()) or "-"
            print(
                f"{method:>14} {seed:>4} {plain['seconds']:10.2f} {tuned['seconds']:9.2f} "
                f"{tuned['seconds'] / plain['seconds']:6.2f} {plain['peak_mb']:11.0f} "
                f"{tuned['peak_mb']:9.0f} {100 * plain['acc1']:11.1f} "
                f"{100 * tuned['acc1']:9.1f}  {chosen}",
                flush=True,
            )


if __name__ == "__main__":
    main()
