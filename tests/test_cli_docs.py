"""The README and the docs agree with each other and show what the demo draws (issue 17, item 7)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _projector_calls(text):
    return re.findall(r"ClassSubspaceProjector\(([^)]*)\)", text)


def test_readme_and_getting_started_give_the_projector_the_same_class_names():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headline = readme[readme.index("## In one screen") : readme.index("## What is inside")]
    guide = (ROOT / "docs" / "getting_started.rst").read_text(encoding="utf-8")
    index = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    for text in (headline, guide, index):
        calls = _projector_calls(text)
        assert calls and all('class_names="labels"' in call for call in calls), calls


def test_docs_show_the_demo_figures():
    studies = (ROOT / "docs" / "studies.rst").read_text(encoding="utf-8")
    figures = re.findall(r"^\.\. (?:figure|image):: (\S+)$", studies, flags=re.M)
    names = {Path(f).name for f in figures}
    assert {"fewshot_shape.png", "fewshot_background.png", "retrieval_map.png"} <= names
    for figure in figures:
        data = (ROOT / "docs" / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, figure
