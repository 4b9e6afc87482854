"""Every script in examples/ runs to the end with --small, as a user would run it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
# What each script prints when it got to the end: a check that it did its work.
EXPECTED = {
    "fewshot_sweep.py": "4-shot",
    "retrieval_oti_vs_pca.py": "PCA← <I←, I←>",
    "train_alignclip.py": "after  modality gap",
    "diagnostics_plots.py": "S_intra recovered from S_inter",
    "local_checkpoint.py": "zero-shot colour accuracy",
}


def test_every_example_is_covered():
    assert {script.name for script in SCRIPTS} == set(EXPECTED)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_example_runs_small(script, tmp_path):
    if script.name == "diagnostics_plots.py":
        pytest.importorskip("matplotlib")
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent), "MPLBACKEND": "Agg"}
    args = [sys.executable, str(script), "--small"]
    if script.name in ("diagnostics_plots.py", "train_alignclip.py"):
        args += ["--out", str(tmp_path)]
    result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert EXPECTED[script.name] in result.stdout, result.stdout[-2000:]
    if script.name == "diagnostics_plots.py":
        assert (tmp_path / "similarity_histograms.png").stat().st_size > 0
    if script.name == "train_alignclip.py":
        assert (tmp_path / "after.safetensors").stat().st_size > 0
