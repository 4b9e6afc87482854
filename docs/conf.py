"""Sphinx configuration for skvlm's documentation.

Builds offline (no intersphinx inventories are fetched, no gallery is executed) and
warning-free under ``sphinx -W``: ``make docs``.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import skvlm  # noqa: E402

project = "skvlm"
author = "the skvlm developers"
copyright = "2026, the skvlm developers"
version = release = skvlm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

# numpydoc renders the Parameters/Returns/Examples sections. The member tables it
# would add to every class duplicate scikit-learn's inherited methods: the API page
# lists the methods that matter explicitly instead.
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
autoclass_content = "class"

templates_path = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {
    "description": "vision-language models as scikit-learn estimators",
    "fixed_sidebar": True,
}
html_static_path = []
# The math renders with MathJax in the reader's browser; the build needs no network.

# Fitted attributes end in "_" (the scikit-learn convention), and docstrings name
# them in running text and in types ("ndarray of shape (n_iter_,)"), where
# reStructuredText would read ``n_iter_`` as a link to a target "n_iter". Escape the
# trailing underscore of such bare words, outside inline literals, after numpydoc has
# turned the sections into reStructuredText.
import re  # noqa: E402

_LITERAL = re.compile(r"(``.+?``|`[^`]+`_{0,2})")
_BARE_ATTRIBUTE = re.compile(r"(?<![\w\\*`:|<])([A-Za-z][A-Za-z0-9_]*_)(?![\w*`])")


def _escape_attribute_names(app, what, name, obj, options, lines):
    in_doctest = False
    literal_indent = None  # indentation of the line that opened a "::" literal block
    for index, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and stripped and indent <= literal_indent:
            literal_indent = None
        if stripped.startswith(">>>"):
            in_doctest = True
        elif not stripped:
            in_doctest = False
        if stripped.endswith("::") and literal_indent is None:
            literal_indent = indent
            continue
        if in_doctest or literal_indent is not None or stripped.startswith(".. "):
            continue
        parts = _LITERAL.split(line)
        parts[::2] = [
            _BARE_ATTRIBUTE.sub(lambda m: m.group(1)[:-1] + "\\_", part) for part in parts[::2]
        ]
        lines[index] = "".join(parts)


def setup(app):
    app.connect("autodoc-process-docstring", _escape_attribute_names, priority=900)
