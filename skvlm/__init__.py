"""skvlm: vision-language models behind scikit-learn's fit / transform / predict.

Public estimators are imported lazily (PEP 562), so ``import skvlm`` stays cheap and
the numeric estimators never pull in torch.
"""

import importlib

__version__ = "0.1.0.dev0"

_PUBLIC = {
    "CLIPEncoder": "skvlm.encoders",
    "ImageEncoder": "skvlm.encoders",
    "TextualInverter": "skvlm.inversion",
    "VisualInverter": "skvlm.inversion",
    "ClassSubspaceProjector": "skvlm.projection",
    "ModalityMeanShift": "skvlm.projection",
    "NearestPrototype": "skvlm.classifiers",
    "ZeroShotClassifier": "skvlm.classifiers",
    "LDAClassifier": "skvlm.classifiers",
    "TipAdapterClassifier": "skvlm.classifiers",
    "TipXClassifier": "skvlm.classifiers",
    "APEClassifier": "skvlm.classifiers",
    "CODERClassifier": "skvlm.classifiers",
    "LinearProbeClassifier": "skvlm.classifiers",
    "Retriever": "skvlm.retrieval",
    "FewShotSplit": "skvlm.model_selection",
    "make_scenes": "skvlm.datasets",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'skvlm' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
