"""Classifiers on embeddings (prototypes, zero-shot, GDA, Tip-Adapter, Tip-X, APE, CODER, linear probe).

They import numpy/scipy/scikit-learn only; a model is loaded (through the encoder
you pass) only when text weights have to be computed from class names.
"""

from ._ape import APEClassifier
from ._coder import CODERClassifier
from ._lda import LDAClassifier
from ._linear_probe import LinearProbeClassifier
from ._prototype import NearestPrototype
from ._search import param_grid, select_params
from ._tip import TipAdapterClassifier, TipXClassifier
from ._zero_shot import ZeroShotClassifier

__all__ = [
    "APEClassifier",
    "CODERClassifier",
    "LDAClassifier",
    "LinearProbeClassifier",
    "NearestPrototype",
    "TipAdapterClassifier",
    "TipXClassifier",
    "ZeroShotClassifier",
    "param_grid",
    "select_params",
]
