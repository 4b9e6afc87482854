"""The ready-made few-shot and retrieval studies of the seed papers, and the demo report.

Every study works on embeddings: the images (and texts) are encoded once, then each
method is a scikit-learn ``Pipeline`` fitted on the embedding arrays, so a sweep over
methods, shots and seeds never runs the model twice. ``run_demo`` does it all on the
shipped tiny models and ``make_scenes``; ``run_folder_study`` on an image folder with
any open_clip model. Both write the same report folder: ``report.md`` (tables and
figures inline), CSV tables, PNG figures and ``summary.json``.

The package, one concept a module:

- ``_methods``: the few-shot method registry (:data:`FEWSHOT_METHODS` is read from it);
- ``_fewshot``: :func:`run_fewshot_study`, :func:`summarize_fewshot`;
- ``_retrieval``: :func:`run_retrieval_study`;
- ``_diagnose``: :func:`diagnose_embeddings`;
- ``_findings``: the numbers a report rests on, gains and verdicts;
- ``_report``: Markdown, CSV, JSON and PNG writers;
- ``_demo``: :func:`run_demo`; ``_folder``: :func:`run_folder_study`;
- :func:`published_results`: the references' published numbers (``skvlm._published``).

Progress lines go to the ``"skvlm.studies"`` logger (and to stderr when a study is
called with ``verbose`` > 0).

The few-shot study follows the references' protocol: each method's hyper-parameters
are chosen on validation shots (never on test rows) over the grid that lives with its
classifier (:func:`skvlm.classifiers.param_grid`); every reported number carries its
95 % interval and every gain is paired (``_intervals``).
"""

import importlib

from ._methods import FEWSHOT_METHODS, RETRIEVAL_METHODS

# The studies are imported lazily (PEP 562): the command line reads the method
# registry without loading scikit-learn.
_PUBLIC = {
    "diagnose_embeddings": "._diagnose",
    "published_results": "skvlm._published",
    "run_demo": "._demo",
    "run_fewshot_study": "._fewshot",
    "run_folder_study": "._folder",
    "run_retrieval_study": "._retrieval",
    "summarize_fewshot": "._fewshot",
}

__all__ = [
    "FEWSHOT_METHODS",
    "RETRIEVAL_METHODS",
    "diagnose_embeddings",
    "published_results",
    "run_demo",
    "run_fewshot_study",
    "run_folder_study",
    "run_retrieval_study",
    "summarize_fewshot",
]


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module 'skvlm.studies' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
