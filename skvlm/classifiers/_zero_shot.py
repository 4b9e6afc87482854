"""ZeroShotClassifier: CLIP's class-name text classifier."""

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .._sklearn import Interval, StrOptions, _fit_context
from ._base import _ScoreClassifierMixin, validate_queries, validate_support
from ._text_weights import TEXT_PARAMETER_CONSTRAINTS, resolve_text_weights


class ZeroShotClassifier(_ScoreClassifierMixin, ClassifierMixin, BaseEstimator):
    """Zero-shot classification by cosine to class-name text embeddings.

    Scores are ``logit_scale · x Wᵀ`` (default 100) with x the L2-normalised image embedding and W the text
    classifier (each class = normalised mean over the templates of the normalised
    template embeddings, Radford et al., 2021). ``fit`` only records the classes and
    builds W; the training rows are not used.

    Parameters
    ----------
    class_names : list of str, "imagenet", "labels" or None, default=None
        Names to embed. A list names the classes either by label (string labels are
        looked up) or by index (integer label i is ``class_names[i]``); ``"labels"``
        or None with string labels embeds the labels themselves.
    templates : {"simple", "openai"}, str, list of str or None, default="simple"
        Prompt templates (see :func:`skvlm._text.resolve_templates`). The default is
        open_clip's 7 "simple" ImageNet templates, the references' ImageNet ensemble
        (none uses the 80 of ``"openai"``); on the other CoOp datasets they use one
        template each, ``skvlm.datasets.COOP_DATASETS[name]["templates"]``. Class names
        go into the prompts with spaces for underscores.
    encoder : object with ``encode_text`` or None, default=None
        Embeds the prompts; None means ``CLIPEncoder()``. Give it a ``cache`` so a
        sweep does not re-embed the names at every fit.
    text_weights : array-like of shape (n_rows, n_features), callable or None, default=None
        Precomputed text classifier (bypasses the encoder): rows in sorted-class
        order, or named by ``class_names``, or indexed by integer labels. A callable
        ``f(classes, n_features)`` is called in ``fit`` and returns one row per class.
    descriptions : mapping of str to list of str, or None, default=None
        Class descriptions (CuPL-style sentences without a ``{}`` slot) keyed by
        class name, embedded with the templates into one mean per class, as APE and
        Tip-X mix templates and GPT-3 descriptions. Every class needs an entry;
        ``templates=[]`` uses the descriptions alone.
    logit_scale : float or "model", default=100.0
        Temperature of the softmax (``predict_proba``): CLIP's fixed 100, which the
        few-shot references use, or ``"model"``, the encoder's own learned
        ``logit_scale.exp()`` (as Cross the Gap's zero-shot evaluation does; skvlm-tiny's
        is about 31.7). It scales the scores, so ``predict`` does not change.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    text_weights_ : ndarray of shape (n_classes, n_features)
        Unit-norm text classifier, row order = ``classes_``.
    logit_scale_ : float
        The scale used.
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

    _parameter_constraints = {
        **TEXT_PARAMETER_CONSTRAINTS,
        "logit_scale": [Interval(Real, 0, None, closed="neither"), StrOptions({"model"})],
    }

    def __init__(
        self,
        class_names=None,
        *,
        templates="simple",
        encoder=None,
        text_weights=None,
        descriptions=None,
        logit_scale=100.0,
    ):
        self.class_names = class_names
        self.templates = templates
        self.encoder = encoder
        self.text_weights = text_weights
        self.descriptions = descriptions
        self.logit_scale = logit_scale

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
        self.logit_scale_ = (
            _model_logit_scale(self.encoder)
            if self.logit_scale == "model"
            else float(self.logit_scale)
        )
        return self

    @classmethod
    def _search_grids(cls, search, dataset):
        return {}  # nothing to tune

    def _scores(self, X):
        X = validate_queries(self, X)
        return X @ (self.logit_scale_ * self.text_weights_.T).astype(X.dtype)


def _model_logit_scale(encoder):
    """exp(logit_scale) of the encoder's CLIP model (the default encoder when None)."""
    if encoder is None:
        from ..encoders import CLIPEncoder

        encoder = CLIPEncoder()
    model = getattr(getattr(encoder, "_loaded", None), "model", None)
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        raise ValueError(
            "logit_scale='model' reads the learned logit_scale of the encoder's CLIP "
            f"model, but {type(encoder).__name__} has none (an image-only model, or a "
            "stand-in encoder); pass a number instead (e.g. 100.0, CLIP's fixed scale)."
        )
    return float(scale.detach().exp()) if hasattr(scale, "detach") else float(np.exp(scale))
