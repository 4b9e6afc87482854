"""Retrieval metrics and a retrieval estimator (numpy only).

Every metric ranks the whole gallery by cosine similarity for each query and
calls a gallery item *relevant* when its label equals the query's label. The
queries are processed ``batch_size`` at a time, so memory grows with
``batch_size * n_gallery`` (plus one unit-row float32 copy of the gallery), never with
``n_queries * n_gallery``.

Tie rule: gallery items with exactly equal (float32) cosine similarity are ranked
by their position in the gallery, the earlier item first. This is the order of a
stable sort of the negated scores, so results are deterministic; libraries that
use an unstable sort (``torch.topk``) or that average over tied groups
(``sklearn.metrics.average_precision_score``) can differ from ours only on tied
scores.

Queries with no relevant item in the gallery (a label absent from the gallery)
have an undefined average precision: the per-query functions return NaN for
them, and the mean metrics exclude them with an ``UndefinedMetricWarning`` that
counts them. Cross the Gap's reference code counts such queries as 0 instead;
the two agree whenever every query has a relevant item.

The package holds the ranking engine (``_ranking``), the metrics (``_metrics``) and
the estimator with its scorer (``_retriever``); the public names are these.
"""

from ._metrics import (
    average_precision_per_query,
    map_at_r,
    mean_average_precision,
    r_precision,
    recall_at_k,
)
from ._retriever import Retriever, retrieval_scorer

__all__ = [
    "Retriever",
    "average_precision_per_query",
    "map_at_r",
    "mean_average_precision",
    "r_precision",
    "recall_at_k",
    "retrieval_scorer",
]
