"""The retrieval study: raw, inverted (OTI / OVI) and PCA← features on the same queries."""

import time
import warnings

import numpy as np
from sklearn.utils import check_array

from .. import inversion
from ..projection import ClassSubspaceProjector
from ..retrieval import average_precision_per_query, map_at_r, mean_average_precision, r_precision
from ._common import check_methods, logger, pandas, progress_to_stderr
from ._intervals import bootstrap_interval
from ._methods import RETRIEVAL_METHODS

TASKS = {"image": "image→image", "text": "text→text"}
_INVERSION_LABEL = {"image": "OTI", "text": "OVI"}
_COLUMNS = [
    "task",
    "method",
    "label",
    "mAP",
    "mAP_ci_low",
    "mAP_ci_high",
    "mAP_at_R",
    "R_precision",
    "n_queries",
    "n_gallery",
    "seconds",
    "ap_per_query",
]


def _retrieval_metrics(queries, query_labels, gallery, gallery_labels, random_state):
    args = (queries, query_labels, gallery, gallery_labels)
    ap = average_precision_per_query(*args)
    _, interval = bootstrap_interval(ap, random_state=random_state)
    low, high = interval if interval is not None else (np.nan, np.nan)
    return {
        "mAP": float(mean_average_precision(*args)),
        "mAP_ci_low": low,
        "mAP_ci_high": high,
        "mAP_at_R": float(map_at_r(*args)),
        "R_precision": float(r_precision(*args)),
        "ap_per_query": ap,
    }


def _invert(kind, queries, encoder, params, random_state):
    """OTI of image queries / OVI of text queries, with the model of ``encoder``."""
    cls = inversion.TextualInverter if kind == "image" else inversion.VisualInverter
    return cls(encoder=encoder, random_state=random_state, **(params or {})).fit_transform(queries)


def run_retrieval_study(
    image_emb,
    image_labels,
    *,
    text_emb=None,
    text_labels=None,
    pca_text_embeddings=None,
    encoder=None,
    methods=None,
    n_queries=200,
    oti_params=None,
    ovi_params=None,
    random_state=0,
    verbose=0,
):
    """Image→image (and text→text) retrieval mAP of raw, inverted and PCA← features.

    A random ``n_queries`` rows (a local generator seeded by ``random_state``) are the
    queries and all the other rows the gallery; an item is relevant when it has the
    query's label. The methods (seed 002, Tab. 3; Cross the Gap):

    - ``"raw"``: ⟨I, I⟩, the embeddings as they are.
    - ``"inversion"``: ⟨T, I⟩, each image query replaced by its OTI pseudo-text feature
      (:class:`~skvlm.inversion.TextualInverter`); for text queries ⟨I, T⟩ with OVI
      (:class:`~skvlm.inversion.VisualInverter`). The gallery stays raw.
    - ``"pca"``: ⟨I←, I←⟩, queries and gallery projected by
      :class:`~skvlm.projection.ClassSubspaceProjector` on ``pca_text_embeddings``.

    Parameters
    ----------
    image_emb, image_labels : array-like of shape (n_images, d) and (n_images,)
        ``image_emb=None`` runs the text→text task alone.
    text_emb, text_labels : array-like, default=None
        Text embeddings and labels for the text→text task (skipped when None).
    pca_text_embeddings : array-like of shape (m, d), default=None
        Class-name text embeddings for PCA← (``"pca"`` is skipped without them).
    encoder : CLIPEncoder, default=None
        The model of the embeddings, for ``"inversion"`` (skipped without it).
    methods : list of str, default=None
        Keys of :data:`RETRIEVAL_METHODS`; None runs all three.
    n_queries : int, default=200
        Queries per task, capped at half the rows (warned; column ``n_queries``).
    oti_params, ovi_params : dict, default=None
        Extra parameters of the inverters (``n_steps``, ``batch_size``...).
    random_state : int, default=0
        Seeds the query draw and the inverters.
    verbose : int, default=0
        Log the inversion steps to stderr (always to the ``"skvlm.studies"`` logger).

    Returns
    -------
    results : pandas.DataFrame
        One row per (task, method): ``task``, ``method``, ``label``, ``mAP``,
        ``mAP_ci_low`` / ``mAP_ci_high`` (bootstrap 95 % interval over the queries),
        ``mAP_at_R``, ``R_precision``, ``n_queries``, ``n_gallery``, ``seconds`` and
        ``ap_per_query`` (per query, NaN without a relevant item: the paired gains).
        ``results.attrs["skipped"]`` maps what could not run to the reason.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.repeat([0, 1, 2], 10)
    >>> X = np.eye(3)[y] + np.random.default_rng(0).normal(scale=0.1, size=(30, 3))
    >>> run_retrieval_study(X, y, methods=["raw"], n_queries=6)[["task", "mAP"]].to_dict("records")
    [{'task': 'image→image', 'mAP': 1.0}]
    """
    methods = check_methods(methods, RETRIEVAL_METHODS, tuple(RETRIEVAL_METHODS))
    tasks = _tasks(image_emb, image_labels, text_emb, text_labels)
    skipped = _skipped(methods, pca_text_embeddings, encoder)
    context = {"pca_text": pca_text_embeddings, "projector": None, "encoder": encoder}
    context.update(params={"image": oti_params, "text": ovi_params}, seed=random_state)
    rng = np.random.default_rng(random_state)
    rows = []
    with progress_to_stderr(verbose):
        for kind, emb, labels in tasks:
            split = _query_split(kind, emb, labels, n_queries, rng)
            rows += [_run_method(m, kind, split, context) for m in methods if m not in skipped]
    results = pandas().DataFrame(rows, columns=_COLUMNS)
    results.attrs["skipped"] = skipped
    return results


def _tasks(image_emb, image_labels, text_emb, text_labels):
    tasks = [] if image_emb is None else [("image", image_emb, image_labels)]
    if text_emb is not None:
        if text_labels is None:
            raise ValueError("text_emb was given without text_labels.")
        tasks.append(("text", text_emb, text_labels))
    return tasks


def _skipped(methods, pca_text_embeddings, encoder):
    """{method: reason} of the requested methods that lack what they need."""
    skipped = {}
    if "pca" in methods and pca_text_embeddings is None:
        skipped["pca"] = "no class-name text embeddings for PCA←"
    if "inversion" in methods and encoder is None:
        skipped["inversion"] = "no encoder (model) to invert with"
    return skipped


def _query_split(kind, emb, labels, n_queries, rng):
    """Validate one task's rows and draw its queries; the other rows are the gallery."""
    emb = check_array(emb, dtype=[np.float32, np.float64], input_name=f"{kind}_emb")
    labels = np.asarray(labels)
    if len(labels) != len(emb):
        raise ValueError(f"{kind} embeddings have {len(emb)} rows but {len(labels)} labels.")
    n_q = int(min(n_queries, len(emb) // 2))
    if n_q < 1:
        raise ValueError(f"Too few {kind} rows ({len(emb)}) to draw queries and a gallery.")
    if n_q < n_queries:
        warnings.warn(
            f"n_queries={n_queries} is more than half of the {len(emb)} {kind} rows: "
            f"{n_q} queries are drawn, the other {len(emb) - n_q} rows are the gallery.",
            UserWarning,
            stacklevel=3,
        )
    order = rng.permutation(len(emb))
    q_idx, g_idx = np.sort(order[:n_q]), np.sort(order[n_q:])
    return {
        "all": emb,
        "queries": emb[q_idx],
        "q_labels": labels[q_idx],
        "gallery": emb[g_idx],
        "g_labels": labels[g_idx],
    }


def _run_method(method, kind, split, context):
    """One result row: the metrics of ``method`` on one task's queries and gallery."""
    tic = time.perf_counter()
    label = RETRIEVAL_METHODS[method]
    queries, gallery = split["queries"], split["gallery"]
    if method == "pca":
        if context["projector"] is None:  # fitted once, on the first task's rows
            projector = ClassSubspaceProjector(text_embeddings=context["pca_text"])
            context["projector"] = projector.fit(split["all"])
        queries = context["projector"].transform(queries)
        gallery = context["projector"].transform(gallery)
    elif method == "inversion":
        label = _INVERSION_LABEL[kind]
        logger.info(f"retrieval: {label} of {len(queries)} {kind} queries")
        queries = _invert(
            kind, queries, context["encoder"], context["params"][kind], context["seed"]
        )
    metrics = _retrieval_metrics(
        queries, split["q_labels"], gallery, split["g_labels"], context["seed"]
    )
    return {
        "task": TASKS[kind],
        "method": method,
        "label": label,
        **metrics,
        "n_queries": len(queries),
        "n_gallery": len(gallery),
        "seconds": time.perf_counter() - tic,
    }
