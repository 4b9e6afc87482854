"""Training-free classifiers on embeddings (prototypes, zero-shot, GDA, Tip-Adapter, Tip-X, APE).

They import numpy/scipy/scikit-learn only; a model is loaded (through the encoder
you pass) only when text weights have to be computed from class names.
"""

from ._prototype import NearestPrototype

__all__ = ["NearestPrototype"]
