"""The public API as of 0.1: no name may disappear (new ones may appear).

A name is public when it is documented, listed in a module's ``__all__``, or reached
as ``skvlm.<Name>``. Refactoring may move the code behind a name, never the name.
Every module also imports under ``python -OO`` (docstrings stripped), so no code may
depend on ``__doc__``.
"""

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import skvlm

PUBLIC = {
    "skvlm": [
        "APEClassifier",
        "CLIPEncoder",
        "ClassSubspaceProjector",
        "FewShotSplit",
        "ImageEncoder",
        "LDAClassifier",
        "ModalityMeanShift",
        "NearestPrototype",
        "Retriever",
        "TextualInverter",
        "TipAdapterClassifier",
        "TipXClassifier",
        "VisualInverter",
        "ZeroShotClassifier",
        "make_scenes",
        "__version__",
    ],
    "skvlm.classifiers": [
        "APEClassifier",
        "LDAClassifier",
        "NearestPrototype",
        "TipAdapterClassifier",
        "TipXClassifier",
        "ZeroShotClassifier",
    ],
    "skvlm.datasets": [
        "FACTOR_NAMES",
        "caption_vocabulary",
        "load_captioned_pairs",
        "load_coop_split",
        "load_image_folder",
        "make_scenes",
    ],
    "skvlm.models": [
        "CheckpointError",
        "LoadedModel",
        "ModelNotFound",
        "WeightsUnavailableError",
        "cached_models",
        "clear_model_cache",
        "list_models",
        "load_model",
        "resolve_device",
        "resolve_precision",
        "resolve_pretrained",
    ],
    "skvlm.studies": [
        "FEWSHOT_METHODS",
        "RETRIEVAL_METHODS",
        "diagnose_embeddings",
        "run_demo",
        "run_fewshot_study",
        "run_folder_study",
        "run_retrieval_study",
        "summarize_fewshot",
    ],
    "skvlm.training": [
        "ContrastiveTrainer",
        "RECIPES",
        "STOP_WORDS",
        "SentenceEncoderDistance",
        "build_tiny",
        "caption_distance",
        "clip_loss",
        "cosine_schedule",
        "evaluate_scenes",
        "images_to_tensor",
        "imsep_loss",
        "save_tiny",
        "siglip_loss",
        "train_tiny",
    ],
    "skvlm.retrieval": [
        "Retriever",
        "average_precision_per_query",
        "map_at_r",
        "mean_average_precision",
        "r_precision",
        "recall_at_k",
        "retrieval_scorer",
    ],
    "skvlm.diagnostics": [
        "alignment_score",
        "modality_gap",
        "recover_intra_similarity",
        "similarity_distributions",
    ],
    "skvlm.model_selection": ["FewShotSplit"],
    "skvlm.projection": ["ClassSubspaceProjector", "ModalityMeanShift"],
    "skvlm.inversion": ["TextualInverter", "VisualInverter"],
    "skvlm.encoders": [
        "CLIPEncoder",
        "CacheCorruptionWarning",
        "CacheWriteWarning",
        "ImageEncoder",
        "UnreadableImageError",
        "UnreadableImageWarning",
        "cache_info",
        "clear_cache",
    ],
    "skvlm.parallel": ["encode"],
    "skvlm.plotting": [
        "plot_fewshot_curves",
        "plot_retrieval_table",
        "plot_similarity_histograms",
    ],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_public_names_still_exist(module_name):
    module = importlib.import_module(module_name)
    missing = [name for name in PUBLIC[module_name] if not hasattr(module, name)]
    assert not missing, f"{module_name} lost public names {missing}"
    exported = getattr(module, "__all__", None)
    if exported is not None:
        unlisted = [n for n in PUBLIC[module_name] if n not in exported and n != "__version__"]
        assert not unlisted, f"{module_name}.__all__ no longer lists {unlisted}"


def test_top_level_names_are_the_subpackages_objects():
    # skvlm.X is a lazy alias (PEP 562): it must be the very object of its home module.
    assert skvlm.Retriever is importlib.import_module("skvlm.retrieval").Retriever
    assert skvlm.NearestPrototype is importlib.import_module("skvlm.classifiers").NearestPrototype
    assert skvlm.FewShotSplit is importlib.import_module("skvlm.model_selection").FewShotSplit
    assert set(PUBLIC["skvlm"]) - {"__version__"} <= set(skvlm.__all__)


def _estimator_classes():
    from sklearn.base import BaseEstimator
    from sklearn.model_selection import BaseCrossValidator

    seen = {}
    for module_name, names in PUBLIC.items():
        module = importlib.import_module(module_name)
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj) and (
                issubclass(obj, (BaseEstimator, BaseCrossValidator)) or name == "ContrastiveTrainer"
            ):
                seen[obj.__qualname__] = obj
    return [seen[name] for name in sorted(seen)]


def test_estimator_parameters_after_the_first_are_keyword_only():
    # As scikit-learn does (``PCA(n_components=None, *, copy=True, ...)``).
    classes = _estimator_classes()
    assert len(classes) >= 15
    positional = {}
    for cls in classes:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        names = [p.name for p in parameters if p.kind in kinds]
        if len(names) > 1:
            positional[cls.__name__] = names
    assert not positional, f"parameters after the first must be keyword-only: {positional}"


def _all_modules():
    root = Path(skvlm.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_every_module_imports_with_docstrings_stripped():
    modules = _all_modules()
    assert "skvlm.retrieval" in modules or "skvlm.retrieval._metrics" in modules
    script = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc(limit=-1).strip())\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-OO", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(skvlm.__file__).parents[1],
    )
    assert result.returncode == 0, f"under python -OO:\n{result.stdout}{result.stderr[-2000:]}"


def _documented_estimators():
    from sklearn.base import BaseEstimator

    classes = [getattr(skvlm, name) for name in skvlm.__all__]
    return [c for c in classes if inspect.isclass(c) and issubclass(c, BaseEstimator)]


def test_every_estimator_links_its_entry_on_the_api_page():
    from sklearn.utils import estimator_html_repr

    from skvlm._sklearn import DOCS_URL

    api = (Path(skvlm.__file__).parents[1] / "docs" / "api.rst").read_text(encoding="utf-8")
    classes = _documented_estimators()
    assert len(classes) >= 15
    wrong = {}
    for cls in classes:
        name = cls.__name__
        # Sphinx gives ``.. autoclass:: skvlm.X`` the anchor ``#skvlm.X`` on api.html.
        assert f".. autoclass:: skvlm.{name}\n" in api, f"{name} is not on the API page"
        link = cls()._get_doc_link()
        if link != f"{DOCS_URL}api.html#skvlm.{name}":
            wrong[name] = link
    assert not wrong, f"estimators linking elsewhere: {wrong}"
    assert DOCS_URL.startswith("https://") and DOCS_URL.endswith("/")
    html = estimator_html_repr(skvlm.Retriever())
    assert f'href="{DOCS_URL}api.html#skvlm.Retriever"' in html


def test_a_subclass_outside_skvlm_gets_no_link():
    # scikit-learn's rule, kept: a user's estimator is not on skvlm's API page.
    subclass = type("MyRetriever", (skvlm.Retriever,), {"__module__": "mypackage"})
    assert subclass()._get_doc_link() == ""
