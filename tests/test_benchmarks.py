"""Every benchmark's --small mode runs to the end (what `make bench` runs); no timings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("bench_*.py"))


def test_make_bench_runs_every_benchmark_in_small_mode():
    makefile = (ROOT / "Makefile").read_text()
    assert "benchmarks/bench_*.py" in makefile and "--small" in makefile
    assert {path.name for path in SCRIPTS} >= {
        "bench_cache.py",
        "bench_encoders.py",
        "bench_inversion.py",
        "bench_retrieval.py",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_small_mode_runs(script, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, str(script), "--small"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()
