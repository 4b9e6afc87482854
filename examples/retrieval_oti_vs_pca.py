"""Image-to-image retrieval: raw features, OTI (Cross the Gap) and PCA← (Herzog & Wang).

Queries are images; the gallery is the other images; an item is relevant when it
shows the query's shape. Three ways to compare them:

- raw:  cosine between image embeddings, <I, I>;
- OTI:  each query inverted into the text tower (TextualInverter), <T, I>;
- PCA←: queries and gallery projected on the principal directions of the class
  names' text embeddings (ClassSubspaceProjector), <I←, I←>.

Run:  python examples/retrieval_oti_vs_pca.py [--small]
"""

import argparse
import os
import time

import numpy as np

from skvlm import ClassSubspaceProjector, CLIPEncoder, TextualInverter
from skvlm.datasets import make_scenes
from skvlm.retrieval import mean_average_precision


def main(small=False):
    n_samples, n_queries, n_steps = (200, 20, 10) if small else (2000, 200, 150)
    scenes = make_scenes(n_samples, random_state=1, version=3)  # the zoo's world
    labels = scenes.factors["shape"].to_numpy()
    encoder = CLIPEncoder(model="skvlm-tiny", device="cpu")
    X = encoder.transform(scenes.images)

    rng = np.random.default_rng(0)
    is_query = np.zeros(n_samples, dtype=bool)
    is_query[rng.choice(n_samples, n_queries, replace=False)] = True
    queries, gallery = X[is_query], X[~is_query]
    q_labels, g_labels = labels[is_query], labels[~is_query]

    results = {}
    results["raw <I, I>"] = mean_average_precision(queries, q_labels, gallery, g_labels)

    start = time.perf_counter()
    oti = TextualInverter(encoder=encoder, n_steps=n_steps, random_state=0)
    inverted = oti.fit_transform(queries)
    results["OTI <T, I>"] = mean_average_precision(inverted, q_labels, gallery, g_labels)
    oti_seconds = time.perf_counter() - start

    start = time.perf_counter()
    shape_names = scenes.factor_names["shape"]
    pca = ClassSubspaceProjector(class_names=shape_names, encoder=encoder).fit(gallery)
    results["PCA← <I←, I←>"] = mean_average_precision(
        pca.transform(queries), q_labels, pca.transform(gallery), g_labels
    )
    pca_seconds = time.perf_counter() - start

    print(f"{n_queries} queries against {len(gallery)} images, relevant = same shape")
    for name, value in results.items():
        print(f"  {name:15s} mAP = {value:.3f}")
    print(f"  time: OTI {oti_seconds:.1f} s ({n_steps} steps), PCA← {pca_seconds:.2f} s")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run (seconds)")
    args = parser.parse_args()
    main(small=args.small or bool(os.environ.get("SKVLM_EXAMPLES_SMALL")))
