"""The documentation builds offline, without a single warning, and covers the API."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _documented_names():
    text = (DOCS / "api.rst").read_text(encoding="utf-8")
    return set(re.findall(r"^\.\. auto(?:class|function|exception):: ([\w.]+)", text, re.M))


def test_every_public_estimator_is_in_the_api_reference():
    import skvlm

    documented = {name.rsplit(".", 1)[-1] for name in _documented_names()}
    missing = [name for name in skvlm.__all__ if name not in documented]
    assert not missing, f"docs/api.rst lacks {missing}"


def test_loaders_and_parallel_are_in_the_api_reference():
    documented = _documented_names()
    for name in (
        "skvlm.datasets.load_image_folder",
        "skvlm.datasets.load_coop_split",
        "skvlm.datasets.load_captioned_pairs",
        "skvlm.parallel.encode",
    ):
        assert name in documented


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="building the docs needs the 'docs' extra (sphinx)")
    pytest.importorskip("numpydoc", reason="building the docs needs the 'docs' extra (numpydoc)")
    out = tmp_path / "html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-E",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ("CLIPEncoder", "load_coop_split", "FewShotSplit", "encode"):
        assert name in api
    assert (out / "user_guide" / "projection.html").exists()
    # Formulas are written out, not left as raw LaTeX source lines.
    assert "math notranslate" in (out / "user_guide" / "classifiers.html").read_text(
        encoding="utf-8"
    )
