"""Training-free classifiers on embeddings (prototypes, zero-shot, GDA, Tip-Adapter, Tip-X, APE).

They import numpy/scipy/scikit-learn only; a model is loaded (through the encoder
you pass) only when text weights have to be computed from class names.
"""

from ._ape import APEClassifier
from ._lda import LDAClassifier
from ._prototype import NearestPrototype
from ._search import param_grid, select_params
from ._tip import TipAdapterClassifier, TipXClassifier
from ._zero_shot import ZeroShotClassifier

__all__ = [
    "APEClassifier",
    "LDAClassifier",
    "NearestPrototype",
    "TipAdapterClassifier",
    "TipXClassifier",
    "ZeroShotClassifier",
    "param_grid",
    "select_params",
]
