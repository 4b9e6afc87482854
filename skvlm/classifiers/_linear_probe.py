"""LinearProbeClassifier: CLIP's logistic-regression baseline on frozen embeddings."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from .._sklearn import Interval, _fit_context
from ._base import _ScoreClassifierMixin, validate_queries, validate_support

#: CLIP's linear-probe sweep (Radford et al. 2021, App. A.3): 96 log-spaced values of the
#: L2 strength λ in [1e-6, 1e6]; C = 1 / λ spans the same set.
LINEAR_PROBE_REFERENCE_GRID = {"C": [float(c) for c in np.logspace(-6, 6, 96)]}
#: A small grid for unit-norm embeddings, whose useful C is larger than for raw ones.
LINEAR_PROBE_DEFAULT_GRID = {"C": [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]}


class LinearProbeClassifier(_ScoreClassifierMixin, ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression on (L2-normalised) embeddings: CLIP's linear probe.

    The baseline of CLIP (Radford et al., 2021, Sec. 3.2 and App. A.3), CoOp and seed
    002's Fig. 6: scikit-learn's L-BFGS :class:`~sklearn.linear_model.LogisticRegression`
    with an L2 penalty of strength ``1 / C``, ``C`` chosen on validation shots
    (``param_grid(LinearProbeClassifier)``, the paper's sweep with ``"reference"``).
    Scores are the logits ``x Wᵀ + b``; ``predict_proba`` is their softmax, which equals
    the logistic regression's own probabilities.

    Parameters
    ----------
    C : float, default=1.0
        Inverse L2 strength (scikit-learn's convention).
    max_iter : int, default=1000
        L-BFGS iterations (the paper's 1,000).
    normalize : bool, default=True
        L2-normalise the rows first, as the other skvlm classifiers do.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        As :class:`~sklearn.linear_model.LogisticRegression` (one row for two classes).
    intercept_ : ndarray of shape (1,) or (n_classes,)
    n_iter_ : int
    n_features_in_ : int

    References
    ----------
    Radford et al. (2021), "Learning transferable visual models from natural language
    supervision", ICML, Sec. 3.2 and Appendix A.3.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import LinearProbeClassifier
    >>> X = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    >>> clf = LinearProbeClassifier(C=10.0).fit(X, ["cat", "cat", "dog", "dog"])
    >>> clf.predict([[0.8, 0.3], [0.2, 0.9]]).tolist()
    ['cat', 'dog']
    """

    _parameter_constraints = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
    }

    def __init__(self, C=1.0, *, max_iter=1000, normalize=True):
        self.C = C
        self.max_iter = max_iter
        self.normalize = normalize

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the logistic regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y_idx = self._validate_support(X, y)
        self._store(LogisticRegression(C=self.C, max_iter=self.max_iter).fit(X, y_idx))
        return self

    def _validate_support(self, X, y):
        X, y_idx = validate_support(self, X, y, normalize=self.normalize)
        if len(self.classes_) < 2:
            raise ValueError(
                "LinearProbeClassifier needs samples of at least 2 classes, got one "
                f"class: {self.classes_[:1].tolist()}."
            )
        return X, y_idx

    def _store(self, model):
        self.coef_ = model.coef_.astype(np.float32)
        self.intercept_ = model.intercept_.astype(np.float32)
        self.n_iter_ = int(np.max(model.n_iter_))

    def _path_correct(self, X_support, y_support, X_val, y_val, sweep):
        """Validation correct counts along a path of ``C``, and the best fit.

        The values of ``C`` are fitted in increasing order, each L-BFGS run started from
        the previous solution (the regularisation path, as scikit-learn's
        ``LogisticRegressionCV`` computes it); each fit meets the solver's tolerance, so
        its predictions equal a cold fit's up to that tolerance. Returns the counts in
        ``sweep``'s order and a fitted copy at the best ``C`` (ties: the first in
        ``sweep``), for the search to hand out instead of a refit.
        """
        from sklearn.base import clone

        X, y_idx = self._validate_support(X_support, y_support)
        learnt = {k: v for k, v in vars(self).items() if k.endswith("_") and k[0] != "_"}
        Cs = [combo.get("C", self.C) for combo in sweep]
        model = LogisticRegression(max_iter=self.max_iter, warm_start=True)
        correct, best = np.zeros(len(sweep), dtype=np.int64), None
        for i in sorted(range(len(sweep)), key=lambda i: (Cs[i], i)):
            model.set_params(C=Cs[i]).fit(X, y_idx)
            fitted = clone(self).set_params(C=Cs[i])
            vars(fitted).update(learnt)  # classes_, n_features_in_ (feature_names_in_)
            fitted._store(model)
            correct[i] = int(np.count_nonzero(fitted.predict(X_val) == y_val))
            if best is None or (correct[i], -i) > (correct[best[0]], -best[0]):
                best = (i, fitted)
        return correct, best[1]

    @classmethod
    def _search_grids(cls, search, dataset):
        return LINEAR_PROBE_DEFAULT_GRID if search == "default" else LINEAR_PROBE_REFERENCE_GRID

    def _scores(self, X):
        X = validate_queries(self, X, normalize=self.normalize)
        logits = X @ self.coef_.T.astype(X.dtype) + self.intercept_
        if logits.shape[1] == 1:  # two classes: logistic regression's one logit z = s1 - s0
            logits = np.hstack([np.zeros_like(logits), logits])
        return logits
