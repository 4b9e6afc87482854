"""Few-shot sweep with GridSearchCV on the embedded default model.

One Pipeline (encoder -> optional PCA← projection -> classifier) and one
GridSearchCV over the projection and the classifier, cross-validated with
k-shot splits. The encoder's embedding cache means each image is encoded once for
the whole sweep, however many candidates and splits there are.

Run:  python examples/fewshot_sweep.py [--small]
"""

import argparse
import os
import time

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skvlm import (
    ClassSubspaceProjector,
    CLIPEncoder,
    LDAClassifier,
    NearestPrototype,
    TipAdapterClassifier,
)
from skvlm.datasets import make_scenes
from skvlm.model_selection import FewShotSplit


def main(small=False):
    # From 2 shots: with one image per class LDA has no within-class spread to estimate.
    n_samples, shots, n_splits = (240, [2, 4], 2) if small else (2000, [2, 4, 8, 16], 5)
    scenes = make_scenes(n_samples, random_state=0, version=3)  # the zoo's world
    y = scenes.factors["shape"].to_numpy()  # the task: which shape is in the picture

    encoder = CLIPEncoder(model="skvlm-tiny", device="cpu", cache="memory")
    projector = ClassSubspaceProjector(class_names="labels", encoder=encoder)
    pipe = Pipeline([("enc", encoder), ("proj", "passthrough"), ("clf", NearestPrototype())])
    grid = {
        "proj": ["passthrough", projector],
        "clf": [NearestPrototype(), LDAClassifier(), TipAdapterClassifier()],
    }

    print(f"{n_samples} scenes, classes: {sorted(set(y))}")
    for k in shots:
        start = time.perf_counter()
        search = GridSearchCV(
            pipe, grid, cv=FewShotSplit(n_shots=k, n_splits=n_splits, random_state=0)
        )
        search.fit(scenes.images, y)
        print(f"\n{k}-shot ({time.perf_counter() - start:.1f} s)")
        results = search.cv_results_
        for i in np.argsort(-results["mean_test_score"]):
            proj = "PCA←" if results["param_proj"][i] is projector else "raw"
            clf = type(results["param_clf"][i]).__name__
            print(
                f"  {clf:22s} {proj:5s} acc = {results['mean_test_score'][i]:.3f}"
                f" ± {results['std_test_score'][i]:.3f}"
            )
    return search


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run (seconds)")
    args = parser.parse_args()
    main(small=args.small or bool(os.environ.get("SKVLM_EXAMPLES_SMALL")))
