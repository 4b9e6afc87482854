"""Importing a numeric module loads no torch and no model layer (DESIGN.md, Layers).

import-linter (pyproject.toml, [tool.importlinter]) checks the import statements,
lazy ones included, but cannot tell a module-level import from a function-level one:
it lists the lazy ones as ignored. This test checks the run-time side of the same
rule: in a fresh interpreter, importing each module below leaves the heavy modules
out of ``sys.modules``.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("torch", "torchvision", "open_clip", "timm", "skvlm.models", "skvlm.encoders")

TORCH_FREE = [
    "skvlm",
    "skvlm._math",
    "skvlm._sklearn",
    "skvlm._text",
    "skvlm.retrieval",
    "skvlm.diagnostics",
    "skvlm.model_selection",
    "skvlm.classifiers",
    "skvlm.projection",
    "skvlm.datasets",
]


def _loaded_after_import(module):
    script = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


@pytest.mark.parametrize("module", TORCH_FREE)
def test_numeric_module_imports_without_torch_or_models(module):
    assert _loaded_after_import(module) == [], f"import {module} loaded heavy modules"


def test_the_check_sees_a_heavy_import():
    # The probe itself must be able to fail: the training losses import torch (the
    # package skvlm.training itself no longer does, so that RECIPES load without it).
    assert "torch" in _loaded_after_import("skvlm.training._losses")
