"""ZeroShotClassifier: CLIP's class-name text classifier."""

from sklearn.base import BaseEstimator, ClassifierMixin

from .._sklearn import _fit_context
from ._base import LOGIT_SCALE, _ScoreClassifierMixin, validate_queries, validate_support
from ._text_weights import TEXT_PARAMETER_CONSTRAINTS, resolve_text_weights


class ZeroShotClassifier(_ScoreClassifierMixin, ClassifierMixin, BaseEstimator):
    """Zero-shot classification by cosine to class-name text embeddings.

    Scores are ``100 · x Wᵀ`` with x the L2-normalised image embedding and W the text
    classifier (each class = normalised mean over the templates of the normalised
    template embeddings, Radford et al., 2021). ``fit`` only records the classes and
    builds W; the training rows are not used.

    Parameters
    ----------
    class_names : list of str, "imagenet", "labels" or None, default=None
        Names to embed. A list names the classes either by label (string labels are
        looked up) or by index (integer label i is ``class_names[i]``); ``"labels"``
        or None with string labels embeds the labels themselves.
    templates : {"openai", "simple"}, str, list of str or None, default="openai"
        Prompt templates (see :func:`skvlm._text.resolve_templates`).
    encoder : object with ``encode_text`` or None, default=None
        Embeds the prompts; None means ``CLIPEncoder()``. Give it a ``cache`` so a
        sweep does not re-embed the names at every fit.
    text_weights : array-like of shape (n_rows, n_features), callable or None, default=None
        Precomputed text classifier (bypasses the encoder): rows in sorted-class
        order, or named by ``class_names``, or indexed by integer labels. A callable
        ``f(classes, n_features)`` is called in ``fit`` and returns one row per class.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    text_weights_ : ndarray of shape (n_classes, n_features)
        Unit-norm text classifier, row order = ``classes_``.
    n_features_in_ : int

    References
    ----------
    Radford et al. (2021), "Learning transferable visual models from natural language
    supervision", Sec. 3.1.4 (prompt ensembling).

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import ZeroShotClassifier
    >>> text = np.array([[1.0, 0.0], [0.0, 1.0]])  # rows for "cat", "dog"
    >>> clf = ZeroShotClassifier(text_weights=text).fit([[1.0, 0.0], [0.0, 1.0]], ["cat", "dog"])
    >>> clf.predict([[0.9, 0.2], [0.1, 0.7]]).tolist()
    ['cat', 'dog']
    """

    _parameter_constraints = dict(TEXT_PARAMETER_CONSTRAINTS)

    def __init__(self, class_names=None, templates="openai", encoder=None, text_weights=None):
        self.class_names = class_names
        self.templates = templates
        self.encoder = encoder
        self.text_weights = text_weights

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Record the classes and build the text classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Only its width is used (checked against the text weights).
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        validate_support(self, X, y)
        self.text_weights_ = resolve_text_weights(self, self.classes_, self.n_features_in_)
        return self

    @classmethod
    def _search_grids(cls, search, dataset):
        return {}  # nothing to tune

    def _scores(self, X):
        X = validate_queries(self, X)
        return X @ (LOGIT_SCALE * self.text_weights_.T).astype(X.dtype)
