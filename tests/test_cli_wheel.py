"""A plain ``pip install`` of the built wheel runs the main job (issue 17, item 1).

The wheel is built from a copy of the sources, installed WITHOUT extras into a fresh
virtual environment, and ``python -m skvlm demo --quick`` runs from another folder.
The fresh environment gets the torch pair (and only what torch and torchvision
themselves require) from the test's own environment through a folder of symbolic
links named in a ``.pth`` file, so pip sees them installed and nothing of several GB
is copied; every other dependency is pip's to resolve from the package index.
"""

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_NETWORK_ERRORS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Name or service not known",
)


def _requirement_closure(names):
    """The installed distributions ``names`` need, transitively (markers evaluated)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen, todo = {}, list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional or platform-specific requirement that is not here
        seen[name] = dist
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(seen.values())


def _link_distributions(dists, folder):
    """Symlink each distribution's top-level files and folders (and its dist-info)."""
    folder.mkdir()
    for dist in dists:
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or ()}
        for top in sorted(tops):
            source = base / top
            if top == ".." or top.endswith(".pth") or not source.exists():
                continue  # scripts in bin/, path hooks of the outer environment
            target = folder / top
            if not target.exists():
                target.symlink_to(source, target_is_directory=source.is_dir())


def _run(cmd, cwd, timeout, env=None):
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["MPLBACKEND"] = "Agg"
    return env


def _build_wheel(tmp_path):
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "skvlm", source / "skvlm", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    dist = tmp_path / "dist"
    result = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(dist),
            str(source),
        ],
        tmp_path,
        300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = dist.glob("skvlm-*.whl")
    return wheel


def _fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    result = _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 300, _clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    python = venv / "bin" / "python"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        tmp_path,
        60,
        _clean_env(),
    ).stdout.strip()
    links = tmp_path / "torch-pair"
    _link_distributions(_requirement_closure(["torch", "torchvision"]), links)
    (Path(site) / "torch_pair.pth").write_text(f"{links}\n")
    return python


def test_plain_wheel_install_runs_demo_quick(tmp_path):
    pytest.importorskip("packaging")
    wheel = _build_wheel(tmp_path)
    python = _fresh_venv(tmp_path)
    env = _clean_env()
    install = _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], tmp_path, 900, env)
    output = install.stdout + install.stderr
    if install.returncode != 0 and any(err in output for err in _NETWORK_ERRORS):
        pytest.skip(
            f"cannot reach the package index to install the wheel's dependencies: "
            f"{output.strip().splitlines()[-1]}"
        )
    assert install.returncode == 0, output
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            tmp_path,
            60,
            env,
        ).stdout.strip()
    )
    assert not (site / "torch").exists(), "pip reinstalled torch instead of using the pair"
    # No extras were asked for, yet the demo's tables and figures need pandas and matplotlib.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import skvlm; print(skvlm.__file__)"], elsewhere, 120, env)
    assert str(tmp_path / "venv") in where.stdout, where.stdout + where.stderr
    demo = _run(
        [
            str(python),
            "-m",
            "skvlm",
            "demo",
            "--quick",
            "--threads",
            "1",
            "--quiet",
            "--out",
            "report",
        ],
        elsewhere,
        1200,
        env,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    report = elsewhere / "report"
    figures = sorted(p.name for p in report.glob("*.png"))
    assert figures, sorted(p.name for p in report.iterdir())
    assert all((report / name).stat().st_size > 1000 for name in figures)
    text = (report / "report.md").read_text()
    assert "not installed" not in text
    assert all(f"]({name})" in text for name in figures), figures
