"""The one place that imports scikit-learn's private helpers.

``_fit_context``, ``_param_validation`` and ``_set_output`` are private in
scikit-learn; importing them here only means a future rename is fixed in one file.
``validate_params`` checks the arguments of public functions the way
``_parameter_constraints`` checks an estimator's: a bad one raises
``InvalidParameterError`` (both a ``ValueError`` and a ``TypeError``) naming it.
``_DocLinkMixin`` sets the two private attributes through which scikit-learn's
notebook HTML repr links an estimator to its documentation.
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
    "DOCS_URL",
    "_DocLinkMixin",
    "_fit_context",
    "_get_output_config",
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "validate_parameter_constraints",
    "validate_params",
]

#: The base URL of skvlm's documentation (the HTML that ``make docs`` builds from docs/).
#: No site is published yet: this is where the API links of the notebook HTML repr point,
#: and the one place to change when the docs move.
DOCS_URL = "https://skvlm.readthedocs.io/en/latest/"


class _DocLinkMixin:
    """Link the estimator's HTML repr (the "?" in a notebook) to its API entry.

    scikit-learn's repr calls ``_get_doc_link()``, which formats ``_doc_link_template``
    for classes whose top-level package is ``_doc_link_module`` (and returns "" for
    any other, such as a user's subclass). Every public skvlm estimator is documented
    on one page, ``api.html``, under the anchor Sphinx gives
    ``.. autoclass:: skvlm.<ClassName>`` (docs/api.rst): ``#skvlm.<ClassName>``.
    Place it left of ``BaseEstimator`` so that its attributes win.
    """

    _doc_link_module = "skvlm"
    _doc_link_template = DOCS_URL + "api.html#skvlm.{estimator_name}"
