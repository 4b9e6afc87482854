"""Class-subspace projection (PCA←, Herzog & Wang 2026) and its mean adjustment.

PCA← keeps the components of an image embedding that lie in the span of the top
principal directions of class-name text embeddings, and drops the rest (seed 002,
Sec. 3.3 and Eq. 11: x← = Q Λ Qᵀ x). It reduces an embedding to its "class-like"
content, which helps when the labels are the concept the class names describe and
can hurt when they are not (the BDD100k ablation).
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    OneToOneFeatureMixin,
    TransformerMixin,
    clone,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from ._math import l2_normalize
from ._sklearn import HasMethods, Interval, StrOptions, _DocLinkMixin, _fit_context
from ._text import class_text_embeddings, resolve_class_names, resolve_templates


def _default_encoder():
    from .encoders import CLIPEncoder

    return CLIPEncoder()


def _n_components_from(spec, singular_values, rank_cap):
    """Number of components for an int or a float (fraction of variance explained)."""
    if isinstance(spec, Integral):
        if spec > rank_cap:
            raise ValueError(
                f"n_components={spec} exceeds the {rank_cap} components available from "
                "the class-name embeddings (at most min(n_classes[-1 if centred], d))."
            )
        return int(spec)
    # sklearn.decomposition.PCA's rule (``_pca.py``, ``_fit_full``; scikit-learn keeps it
    # inline, with no helper to call): the fewest components whose cumulative ratio
    # exceeds the fraction, side="right" so that a tie takes one more (its issue #15669).
    variance = singular_values**2
    ratio = np.cumsum(variance / variance.sum())
    return int(min(np.searchsorted(ratio, spec, side="right") + 1, rank_cap))


class ClassSubspaceProjector(
    _DocLinkMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Project embeddings onto the principal subspace of class-name text embeddings (PCA←).

    ``fit`` embeds the class names (each class = L2-normalised mean over the templates
    of L2-normalised template embeddings) and finds their top ``n_components``
    principal directions U (k x d). ``transform`` returns ``X Uᵀ U`` (``reproject``)
    or the coordinates ``X Uᵀ``. The embeddings ``X`` are not centred: the projection
    is the linear map of Eq. 11 of Herzog & Wang (2026).

    Parameters
    ----------
    class_names : "imagenet", "labels" or list of str, default="imagenet"
        ``"imagenet"``: open_clip's 1000 ImageNet class names (shipped with open_clip,
        nothing is downloaded); ``"labels"``: the labels seen by ``fit`` (``y``).
    templates : "simple", "openai", None or list of str, default="simple"
        Prompt templates (open_clip's 7 or 80 ImageNet templates); ``None`` embeds
        the bare class names, as the paper's retrieval code does.
    n_components : int, float or None, default=None
        ``None``: d // 2, capped at the rank available (the paper's choice); an int:
        that many; a float in (0, 1): enough components to explain that fraction of
        the class-name variance (as :class:`sklearn.decomposition.PCA`).
    center : bool, default=True
        PCA of the centred class rows (the paper's supplementary code); ``False``:
        SVD of the raw rows (its README snippet).
    reproject : bool, default=True
        Map back to the original space (n x d), so text-side classifiers still fit
        downstream; ``False`` returns the k coordinates.
    normalize : bool, default=False
        L2-normalise the output rows.
    encoder : CLIPEncoder or None, default=None
        Embeds the class names; ``None`` means ``CLIPEncoder()`` (ViT-B-32). Must be
        the model that produced ``X``.
    text_embeddings : array of shape (m, d), callable or None, default=None
        Class-name embeddings given directly; bypasses the model entirely. A callable
        is called with the width d of ``X`` and returns the (m, d) array (useful
        when the rows are computed lazily or looked up per model).

    Attributes
    ----------
    components_ : ndarray of shape (n_components, d)
        The principal directions U, rows of unit norm.
    explained_variance_ratio_ : ndarray of shape (n_components,)
    text_mean_ : ndarray of shape (d,)
        Mean of the class-name rows (zeros when ``center=False``).
    class_names_ : list of str or None
        The class names embedded (None when ``text_embeddings`` was given).
    n_components_ : int
    n_features_in_ : int

    References
    ----------
    J. Herzog and Y. Wang, "Reevaluating the intra-modal misalignment hypothesis in
    CLIP", 2026, Sec. 3.3 and Appendix B (Eq. 11).

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import ClassSubspaceProjector
    >>> text = np.eye(4)[:3]            # three "class names" spanning 3 of 4 axes
    >>> proj = ClassSubspaceProjector(text_embeddings=text, n_components=2, center=False)
    >>> proj.fit_transform(np.array([[1.0, 1.0, 1.0, 1.0]])).shape
    (1, 4)
    >>> bool(np.allclose(proj.components_ @ proj.components_.T, np.eye(2)))
    True
    """

    _parameter_constraints = {
        "class_names": [StrOptions({"imagenet", "labels"}), list, tuple, np.ndarray],
        "templates": [StrOptions({"simple", "openai"}), str, list, tuple, None],
        "n_components": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="neither"),
            None,
        ],
        "center": ["boolean"],
        "reproject": ["boolean"],
        "normalize": ["boolean"],
        "encoder": [HasMethods(["encode_text"]), None],
        "text_embeddings": ["array-like", callable, None],
    }

    def __init__(
        self,
        class_names="imagenet",
        *,
        templates="simple",
        n_components=None,
        center=True,
        reproject=True,
        normalize=False,
        encoder=None,
        text_embeddings=None,
    ):
        self.class_names = class_names
        self.templates = templates
        self.n_components = n_components
        self.center = center
        self.reproject = reproject
        self.normalize = normalize
        self.encoder = encoder
        self.text_embeddings = text_embeddings

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Find the class-name principal directions.

        Parameters
        ----------
        X : array-like of shape (n_samples, d)
            Embeddings (only their width is used, and checked against the text rows).
        y : array-like of shape (n_samples,), optional
            Labels; required when ``class_names="labels"``.

        Returns
        -------
        self
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        text = self._text_rows(y, X.shape[1])
        if text.shape[1] != X.shape[1]:
            raise ValueError(
                f"The class-name text embeddings have width {text.shape[1]} but X has "
                f"{X.shape[1]} features: they must come from the same model."
            )
        text = text.astype(np.float64)
        self.text_mean_ = text.mean(axis=0) if self.center else np.zeros(text.shape[1])
        centered = text - self.text_mean_
        # The directions and variance ratios ignore an overall scale, but squaring the
        # singular values of rows near 1e300 overflows and of subnormal rows underflows.
        peak = np.abs(centered).max()
        _, singular_values, components = np.linalg.svd(
            centered / peak if peak > 0 else centered, full_matrices=False
        )
        tol = singular_values.max(initial=0.0) * max(text.shape) * np.finfo(np.float64).eps
        rank = int((singular_values > tol).sum())
        if rank == 0:
            raise ValueError("The class-name text embeddings have rank 0 (all rows equal?).")
        d = X.shape[1]
        if self.n_components is None:
            k = max(1, min(d // 2, rank))
        else:
            k = _n_components_from(self.n_components, singular_values[:rank], rank)
        self.n_components_ = k
        self.components_ = components[:k].astype(X.dtype)
        variance = singular_values**2
        self.explained_variance_ratio_ = (variance[:k] / variance.sum()).astype(X.dtype)
        return self

    def _text_rows(self, y, n_features):
        if self.text_embeddings is not None:
            text = self.text_embeddings
            text = np.asarray(text(n_features) if callable(text) else text, dtype=np.float64)
            if text.ndim != 2 or text.shape[0] == 0:
                raise ValueError(
                    f"text_embeddings must be a non-empty 2-D array, got shape {text.shape}."
                )
            if not np.isfinite(text).all():
                raise ValueError("text_embeddings contains NaN or infinity.")
            self.class_names_ = None
            return text
        if isinstance(self.class_names, str) and self.class_names == "labels":
            if y is None:
                raise ValueError("class_names='labels' needs y in fit (the class names).")
            names = [str(c) for c in np.unique(np.asarray(y))]
        else:
            names = resolve_class_names(self.class_names)
        encoder = self.encoder if self.encoder is not None else _default_encoder()
        self.class_names_ = names
        return class_text_embeddings(encoder.encode_text, names, resolve_templates(self.templates))

    def transform(self, X):
        """Project ``X`` onto the class subspace.

        Parameters
        ----------
        X : array-like of shape (n_samples, d)

        Returns
        -------
        ndarray of shape (n_samples, d) if ``reproject`` else (n_samples, n_components_)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        coordinates = X @ self.components_.T
        out = coordinates @ self.components_ if self.reproject else coordinates
        if self.normalize:
            out = l2_normalize(out)
        return out.astype(X.dtype, copy=False)

    @property
    def _n_features_out(self):
        return self.n_features_in_ if self.reproject else self.n_components_

    def get_feature_names_out(self, input_features=None):
        """Input names when re-projected (same axes), else ``classsubspaceprojector0..k``."""
        check_is_fitted(self)
        if self.reproject:
            return OneToOneFeatureMixin.get_feature_names_out(self, input_features)
        return super().get_feature_names_out(input_features)


class ModalityMeanShift(_DocLinkMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """PCA← followed by the mean adjustment of Eq. 12 (Herzog & Wang 2026, App. B).

    ``x̃ = Q Λ Qᵀ x + Q (1 − Λ) Qᵀ μ_x``: the part of the mean of the fitted rows
    that the projection cut off is added back. It is a translation, so cosine
    geometry between projected rows changes but Euclidean distances do not; the paper
    uses it to show projected embeddings stay close to the originals.

    Parameters
    ----------
    projector : ClassSubspaceProjector or None, default=None
        Cloned and fitted on ``X``; ``None`` means ``ClassSubspaceProjector()``. Must
        re-project (``reproject=True``).

    Attributes
    ----------
    projector_ : ClassSubspaceProjector
        The fitted clone.
    mean_ : ndarray of shape (d,)
        Mean of the fitted rows (μ_x).
    shift_ : ndarray of shape (d,)
        δ_μ = μ_x − U ᵀU μ_x, added to every projected row.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import ClassSubspaceProjector, ModalityMeanShift
    >>> X = np.array([[1.0, 2.0], [3.0, 2.0]])
    >>> proj = ClassSubspaceProjector(text_embeddings=[[1.0, 0.0]], n_components=1, center=False)
    >>> ModalityMeanShift(proj).fit_transform(X)
    array([[1., 2.],
           [3., 2.]])
    """

    _parameter_constraints = {"projector": [HasMethods(["fit", "transform"]), None]}

    def __init__(self, projector=None):
        self.projector = projector

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the projector and the shift on ``X`` (image embeddings)."""
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        projector = ClassSubspaceProjector() if self.projector is None else clone(self.projector)
        if not getattr(projector, "reproject", True):
            raise ValueError("ModalityMeanShift needs a projector with reproject=True.")
        self.projector_ = projector.fit(X, y)
        self.mean_ = X.mean(axis=0)
        self.shift_ = (self.mean_ - self.projector_.transform(self.mean_[None, :])[0]).astype(
            X.dtype
        )
        return self

    def transform(self, X):
        """Project and shift ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return (self.projector_.transform(X) + self.shift_).astype(X.dtype, copy=False)
