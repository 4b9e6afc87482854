"""The few-shot method registry: one entry per method, the only place that knows it.

Each :class:`FewShotMethod` says how the method is labelled in tables and figures,
which estimator it runs, whether it needs the class-name text classifier, whether a
PCA← projection comes first, and whether it is in the default method list. The
studies and the command line read everything from :data:`REGISTRY`; adding a method is
one entry here plus its estimator in :mod:`skvlm.classifiers`.

The module imports nothing but the standard library, so that the command line can
build its parser from the registry without loading scikit-learn; estimators are named
here and imported when a pipeline is built.
"""

import importlib
from dataclasses import dataclass, field

__all__ = ["DEFAULT_FEWSHOT", "FEWSHOT_METHODS", "REGISTRY", "RETRIEVAL_METHODS", "FewShotMethod"]

#: Retrieval methods: key -> label. "inversion" is OTI for image queries, OVI for text.
RETRIEVAL_METHODS = {"raw": "raw", "inversion": "OTI / OVI", "pca": "PCA←"}


@dataclass(frozen=True)
class FewShotMethod:
    """One few-shot method of the studies.

    Parameters
    ----------
    key : str
        The name in ``methods=``, CSVs, ``summary.json`` and on the command line.
    label : str
        The name in tables and figures.
    estimator : str or type
        The name of the classifier class in :mod:`skvlm.classifiers` (or a class).
    text : {"none", "optional", "required"}, default="none"
        ``"required"``: the method is skipped without class-name text weights;
        ``"optional"``: it runs image-only without them; ``"none"``: it takes none.
    pca : bool, default=False
        A :class:`~skvlm.projection.ClassSubspaceProjector` onto class-name text rows
        comes first (the method is skipped without them).
    default : bool, default=True
        Whether the method is in the default method list.
    params : dict, default={}
        Constructor parameters of the estimator other than ``text_weights``.
    text_params : tuple of str, default=("text_weights",)
        The estimator parameters that receive the class-name text classifier.
    views : bool, default=False
        The support enters as its augmented views, one row per view (GDA at 1 shot as
        its reference runs it); the method is skipped without them.

    Its search grid is the estimator's own
    (:func:`skvlm.classifiers.param_grid`), so a ``GridSearchCV`` user gets the same.
    """

    key: str
    label: str
    estimator: object
    text: str = "none"
    pca: bool = False
    default: bool = True
    params: dict = field(default_factory=dict)
    text_params: tuple = ("text_weights",)
    views: bool = False

    @property
    def uses_text(self):
        """Whether the method reads class-name text embeddings at all."""
        return self.text != "none" or self.pca

    @property
    def estimator_class(self):
        """The classifier class itself."""
        if isinstance(self.estimator, type):
            return self.estimator
        return getattr(importlib.import_module("skvlm.classifiers"), self.estimator)

    def grid(self, pipeline, search="default", dataset=None):
        """The search grid of a pipeline of this method (``clf__<param>`` names)."""
        from ..classifiers import param_grid

        return param_grid(pipeline, search, dataset=dataset)

    def pipeline(self, text_weights=None, pca_text_embeddings=None):
        """The method's unfitted ``Pipeline``, or a string saying why it cannot run."""
        from sklearn.pipeline import Pipeline

        from ..projection import ClassSubspaceProjector

        if self.pca and pca_text_embeddings is None:
            return "no class-name text embeddings for PCA←"
        if self.text == "required" and text_weights is None:
            return "needs class-name text weights"
        params = dict(self.params)
        if self.text != "none" and text_weights is not None:
            params.update(dict.fromkeys(self.text_params, text_weights))
        steps = []
        if self.pca:
            steps.append(("pca", ClassSubspaceProjector(text_embeddings=pca_text_embeddings)))
        steps.append(("clf", self.estimator_class(**params)))
        return Pipeline(steps)


_ENTRIES = [
    FewShotMethod("zeroshot", "zero-shot", "ZeroShotClassifier", text="required"),
    FewShotMethod("prototype", "NearestPrototype", "NearestPrototype"),
    # After PCA← the projected rows go to the classifier as they are, not re-normalised,
    # as seed 002's code does (Is-CLIP main_few_shots.py, prototype_classify).
    FewShotMethod(
        "prototype_pca",
        "NearestPrototype + PCA←",
        "NearestPrototype",
        pca=True,
        params={"normalize": False},
    ),
    FewShotMethod("lda", "LDA", "LDAClassifier", text="optional"),
    FewShotMethod(
        "lda_pca",
        "LDA + PCA←",
        "LDAClassifier",
        text="optional",
        pca=True,
        params={"normalize": False},
        default=False,
    ),
    FewShotMethod("tip_adapter", "Tip-Adapter", "TipAdapterClassifier", text="optional"),
    FewShotMethod("tip_x", "Tip-X", "TipXClassifier", text="required"),
    FewShotMethod("ape", "APE", "APEClassifier", text="required"),
    # CODER's text bank here is the class-name text classifier itself (one row per
    # class); the reference's also holds attributes and analogous classes of an LLM.
    FewShotMethod(
        "coder",
        "CODER",
        "CODERClassifier",
        text="required",
        text_params=("text_weights", "text_bank"),
    ),
    FewShotMethod("linear_probe", "linear probe", "LinearProbeClassifier", default=False),
    FewShotMethod(
        "lda_views",
        "LDA (augmented views)",
        "LDAClassifier",
        text="optional",
        views=True,
        default=False,
    ),
]

#: Every few-shot method, by key, in table order.
REGISTRY = {method.key: method for method in _ENTRIES}

#: Few-shot methods: key -> label used in tables and figures.
FEWSHOT_METHODS = {key: method.label for key, method in REGISTRY.items()}

#: The methods a study runs when ``methods`` is None.
DEFAULT_FEWSHOT = tuple(key for key, method in REGISTRY.items() if method.default)
