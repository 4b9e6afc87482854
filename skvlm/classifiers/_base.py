"""The shared classifier machinery: one mixin maps ``_scores`` to the public methods.

Every skvlm classifier computes an (n_samples, n_classes) score matrix in
``_scores(X)``; :class:`_ScoreClassifierMixin` turns it into ``decision_function``,
``predict``, ``predict_proba`` and ``predict_log_proba`` (softmax of the scores), the
way scikit-learn's ``DiscriminantAnalysisPredictionMixin`` serves NearestCentroid
and QDA from one ``_decision_function``.
"""

from numbers import Integral

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._math import l2_normalize, log_softmax, softmax
from .._sklearn import Interval, _DocLinkMixin

#: CLIP's logit scale: the text classifier's scores are 100 x cos (Radford et al., 2021).
LOGIT_SCALE = 100.0

_FLOAT_DTYPES = [np.float64, np.float32]

BATCH_SIZE_CONSTRAINT = [Interval(Integral, 1, None, closed="left")]


def validate_support(estimator, X, y, normalize=True):
    """Validate the training rows, record ``classes_`` and return (unit) rows + indices."""
    X, y = validate_data(estimator, X, y, dtype=_FLOAT_DTYPES)
    check_classification_targets(y)
    estimator.classes_, y_idx = np.unique(y, return_inverse=True)
    return (l2_normalize(X) if normalize else X), y_idx


def validate_queries(estimator, X, normalize=True):
    """Fitted check, then the query rows validated against the fit and (L2-normalised)."""
    check_is_fitted(estimator)
    X = validate_data(estimator, X, reset=False, dtype=_FLOAT_DTYPES)
    return l2_normalize(X) if normalize else X


class _ScoreClassifierMixin(_DocLinkMixin):
    """``decision_function``/``predict``/``predict_proba`` from one ``_scores(X)``.

    ``_scores`` returns an (n_samples, n_classes) array whose column order is
    ``classes_``; it validates ``X`` itself (so each method validates once).
    """

    def decision_function(self, X):
        """Class scores of each row (logits: higher means more likely).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float32
            For two classes, a 1-D array of ``score[1] - score[0]`` (scikit-learn's
            binary convention: positive means ``classes_[1]``).
        """
        scores = self._scores(X)
        if scores.shape[1] == 2:
            return (scores[:, 1] - scores[:, 0]).astype(np.float32)
        return scores.astype(np.float32, copy=False)

    def predict(self, X):
        """The class of highest score for each row (ties go to the first class).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        scores = self._scores(X)  # first: it raises NotFittedError before classes_ is read
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X):
        """Softmax of the class scores.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
            float64 like scikit-learn's classifiers: a float32 probability rounds
            1 - 1e-9 to 1, and ``log(predict_proba)`` would then disagree with
            ``predict_log_proba``.
        """
        return softmax(np.asarray(self._scores(X), dtype=np.float64))

    def predict_log_proba(self, X):
        """Log-softmax of the class scores.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
        """
        return log_softmax(np.asarray(self._scores(X), dtype=np.float64))
