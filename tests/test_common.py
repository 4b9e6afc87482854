"""scikit-learn's own estimator checks, our peer review.

Numeric estimators (everything that takes embeddings) pass the full
``parametrize_with_checks``. Text-using estimators get their text rows from a callable
of the data width (``_text_rows``), because sklearn's checks fit on data of many widths
and a fixed array could only match one. Encoders, whose input is images or text, run
the checks that apply to them.
"""

import numpy as np
import pytest
from sklearn.utils import estimator_checks as checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from skvlm import ClassSubspaceProjector, CLIPEncoder, ImageEncoder, ModalityMeanShift, Retriever


class TextRows:
    """Eight random unit rows of the requested width (stand-in class-name embeddings).

    A class with a stable ``repr``: test ids must not contain memory addresses, or
    pytest-xdist workers collect different ids.
    """

    def __call__(self, n_features):
        rows = np.random.default_rng(0).normal(size=(8, n_features))
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def __repr__(self):
        return "TextRows()"


_text_rows = TextRows()

# The classifiers' checks are in tests/test_common_classifiers.py.
NUMERIC_ESTIMATORS = [
    Retriever(),
    Retriever(n_neighbors=1),
    ClassSubspaceProjector(text_embeddings=_text_rows),
    ClassSubspaceProjector(text_embeddings=_text_rows, reproject=False, normalize=True),
    ClassSubspaceProjector(text_embeddings=_text_rows, center=False, n_components=0.8),
    ModalityMeanShift(ClassSubspaceProjector(text_embeddings=_text_rows)),
]


@parametrize_with_checks(NUMERIC_ESTIMATORS)
def test_sklearn_compatible_numeric_estimator(estimator, check):
    check(estimator)


ENCODERS = [
    CLIPEncoder(model="skvlm-tiny", pretrained=None, device="cpu"),
    ImageEncoder(model="test_vit", pretrained=None, device="cpu"),
]
ENCODER_CHECKS = [
    checks.check_no_attributes_set_in_init,
    checks.check_parameters_default_constructible,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_estimator_cloneable,
    checks.check_estimator_repr,
    checks.check_do_not_raise_errors_in_init_or_set_params,
]


@pytest.mark.parametrize("encoder", ENCODERS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", ENCODER_CHECKS, ids=lambda c: c.__name__)
def test_encoder_checks_that_apply(encoder, check):
    check(type(encoder).__name__, encoder)
