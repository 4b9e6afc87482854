"""The one place that imports scikit-learn's private helpers.

``_fit_context``, ``_param_validation`` and ``_set_output`` are private in
scikit-learn; importing them here only means a future rename is fixed in one file.
``validate_params`` checks the arguments of public functions the way
``_parameter_constraints`` checks an estimator's: a bad one raises
``InvalidParameterError`` (both a ``ValueError`` and a ``TypeError``) naming it.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
from sklearn.utils._set_output import _get_output_config

__all__ = [
    "_fit_context",
    "_get_output_config",
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "validate_parameter_constraints",
    "validate_params",
]
