"""LDAClassifier: the training-free GDA of Wang et al. (ICLR 2024)."""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .._math import class_means
from .._sklearn import Interval, _fit_context
from ._base import LOGIT_SCALE, _ScoreClassifierMixin, validate_queries, validate_support
from ._search import count_correct
from ._text_weights import TEXT_PARAMETER_CONSTRAINTS, resolve_text_weights, uses_text

#: GDA's alpha grid (mrflogs/ICLR24 560fe21 ``main_few_shots.py:70``); small enough to be
#: the default too.
LDA_REFERENCE_GRID = {"alpha": [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0]}


class LDAClassifier(_ScoreClassifierMixin, ClassifierMixin, BaseEstimator):
    """Gaussian discriminant analysis with a shared, shrunk covariance (GDA / "LDA").

    With μ_c the class means of the L2-normalised rows, Σ̂ the covariance of the
    class-centred rows (divided by N − 1) and D the width:

    - precision Λ = D · pinv((N − 1) Σ̂ + tr(Σ̂) I)  (the reference code's shrinkage),
    - ``coef_`` w_c = Λ μ_c and ``intercept_`` b_c = log(1/C) − ½ μ_cᵀ Λ μ_c,
    - scores = x Wᵀ + b without text; ``100 · x W_textᵀ + alpha · (x Wᵀ + b)`` with
      text (the paper's zero-shot ensemble).

    With one sample per class Σ̂ = 0 (so too when the rows of each class differ only
    in norm: a spread at round-off level counts as 0), so Λ = 0 and the image-only
    scores are the constant log(1/C): every query gets ``classes_[0]`` (chance
    accuracy, the 1-shot "LDA" column of seed 002). This is the reference behaviour, kept on purpose and
    announced by a ``UserWarning``; with text weights the model reduces to zero-shot.
    More shots avoid it, and so do augmented views kept as separate rows (the
    reference stacks ``augment_epoch`` = 10 views of every shot). Averaged views, as
    ``CLIPEncoder(n_augmentations=...)`` produces for Tip-Adapter's cache, are still
    one row per shot and do not.

    Parameters
    ----------
    alpha : float, default=1.0
        Weight of the GDA logits in the ensemble with the text classifier (the
        reference searches it in {1e-4, ..., 100} on validation data). Unused
        without text.
    normalize : bool, default=True
        L2-normalise the rows (support and queries) first, as the reference does
        with CLIP features. ``False`` uses the rows as given everywhere (means,
        covariance, scores), as seed 002's code does after PCA←: its projected rows
        are not unit vectors and go into GDA unchanged.
    class_names, templates, encoder, text_weights, descriptions
        Optional text classifier, as in :class:`ZeroShotClassifier`. Without any of
        them the classifier is image-only.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    means_ : ndarray of shape (n_classes, n_features)
        Class means of the normalised rows.
    precision_ : ndarray of shape (n_features, n_features)
        The shrunk precision Λ.
    coef_ : ndarray of shape (n_classes, n_features)
    intercept_ : ndarray of shape (n_classes,)
    text_weights_ : ndarray of shape (n_classes, n_features) or None
    n_features_in_ : int

    References
    ----------
    Wang, Lin, Chen & Zhang (2024), "A hard-to-beat baseline for training-free CLIP-based
    adaptation", ICLR, Eq. 5-7 and the ``main_few_shots.py`` of github.com/mrflogs/ICLR24.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import LDAClassifier
    >>> X = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    >>> clf = LDAClassifier().fit(X, [0, 0, 1, 1])
    >>> clf.predict([[0.8, 0.3], [0.2, 0.9]]).tolist()
    [0, 1]
    """

    _parameter_constraints = {
        "alpha": [Interval(Real, 0, None, closed="left")],
        "normalize": ["boolean"],
        **TEXT_PARAMETER_CONSTRAINTS,
    }

    def __init__(
        self,
        alpha=1.0,
        *,
        normalize=True,
        class_names=None,
        templates="simple",
        encoder=None,
        text_weights=None,
        descriptions=None,
    ):
        self.alpha = alpha
        self.normalize = normalize
        self.class_names = class_names
        self.templates = templates
        self.encoder = encoder
        self.text_weights = text_weights
        self.descriptions = descriptions

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Estimate the class means, the shrunk shared precision and the text classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y_idx = validate_support(self, X, y, normalize=self.normalize)
        n_classes = len(self.classes_)
        eps = np.finfo(X.dtype).eps  # the precision of the (unit) rows
        X = X.astype(np.float64)
        means = class_means(X, y_idx, n_classes)
        # the round-off level scales with the rows' squared norm (1 for unit rows)
        eps *= np.sqrt(np.mean(np.einsum("ij,ij->i", X, X))) if not self.normalize else 1.0
        precision = _shrunk_precision(X - means[y_idx], eps, np.bincount(y_idx).max())
        if not precision.any():
            # What the scores become depends on the text part: say what the table will show.
            outcome = (
                "so the predictions are the text classifier's alone (zero-shot accuracy"
                if uses_text(self)
                else f"every query is classified as {self.classes_[:1].tolist()[0]!r} "
                "(chance accuracy"
            )
            warnings.warn(
                f"LDAClassifier: the {X.shape[0]} rows have no spread within their "
                f"classes ({n_classes} classes, e.g. one sample per class, or rows that "
                "differ only in norm), so the shared "
                "covariance is 0, the GDA precision is 0 and the image-only scores are "
                f"the constant log(1/{n_classes}): {outcome}, the 1-shot LDA collapse of "
                "the reference). Use more shots, or augmented views of each shot as "
                "separate rows (averaged views do not help).",
                UserWarning,
                stacklevel=3,  # fit -> sklearn's _fit_context wrapper -> the caller
            )
        self.means_ = means.astype(np.float32)
        self.precision_ = precision.astype(np.float32)
        self.coef_ = (means @ precision).astype(np.float32)
        quad = np.einsum("cd,de,ce->c", means, precision, means)
        self.intercept_ = (np.log(1.0 / n_classes) - 0.5 * quad).astype(np.float32)
        self.text_weights_ = (
            resolve_text_weights(self, self.classes_, self.n_features_in_)
            if uses_text(self)
            else None
        )
        return self

    @classmethod
    def _search_grids(cls, search, dataset):
        return LDA_REFERENCE_GRID

    def _unused_search_params(self):
        return () if uses_text(self) else ("alpha",)

    _grid_params = ("alpha",)

    def _grid_correct(self, X, target, sweep):
        """Correct predictions per alpha of ``sweep``: alpha only mixes the two logits."""
        X = validate_queries(self, X, normalize=self.normalize)
        lda = X @ self.coef_.T.astype(X.dtype)
        lda += self.intercept_
        if self.text_weights_ is None:
            return np.full(len(sweep), count_correct(lda, target))
        text = X @ (LOGIT_SCALE * self.text_weights_.T).astype(X.dtype)
        correct = np.zeros(len(sweep), dtype=np.int64)
        for i, combo in enumerate(sweep):
            scores = lda * combo.get("alpha", self.alpha)
            scores += text
            correct[i] = count_correct(scores, target)
        return correct

    def _scores(self, X):
        X = validate_queries(self, X, normalize=self.normalize)
        scores = X @ self.coef_.T.astype(X.dtype)
        scores += self.intercept_
        if self.text_weights_ is None:
            return scores
        scores *= self.alpha  # in place: the (n, C) matrices are the big ones here
        scores += X @ (LOGIT_SCALE * self.text_weights_.T).astype(X.dtype)
        return scores


def _shrunk_precision(centered, eps, max_class_size):
    """D · pinv((N − 1) Σ̂ + tr(Σ̂) I) for the class-centred rows (float64).

    A spread at the round-off level of the unit rows counts as no spread (precision
    0): rows of one class that differ only in norm (x, 3x) normalise to the same
    direction up to a few ``eps``, and inverting that noise gave precisions near 1e32
    and scores that changed sign when the rows were permuted.
    """
    n_samples, n_features = centered.shape
    scatter = centered.T @ centered  # (N - 1) Σ̂
    trace = np.trace(scatter) / (n_samples - 1) if n_samples > 1 else 0.0
    # Each centred entry carries ~eps from the normalisation plus the rounding of a
    # class mean, which grows like sqrt(class size); summed over D coordinates.
    noise = n_features * max_class_size * (4 * eps) ** 2
    if trace <= noise:
        return np.zeros((n_features, n_features))
    # The shrinkage makes the matrix positive definite (eigenvalues >= tr Σ̂, condition
    # number <= N), so the reference's pinv is the plain inverse, which is cheaper.
    shrunk = scatter + trace * np.eye(n_features)
    precision = np.linalg.inv(shrunk)
    return n_features * 0.5 * (precision + precision.T)
