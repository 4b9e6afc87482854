"""The one place that imports scikit-learn's private helpers.

``_fit_context`` and ``_param_validation`` are private in scikit-learn; importing
them here only means a future rename is fixed in one file.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils._set_output import _get_output_config

__all__ = [
    "_fit_context",
    "_get_output_config",
    "HasMethods",
    "Interval",
    "Options",
    "StrOptions",
    "validate_parameter_constraints",
]
