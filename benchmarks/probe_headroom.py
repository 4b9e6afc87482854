"""How much room the demo's world leaves few-shot methods over zero-shot (issue 14).

Not a timing benchmark: for each tiny text model, on ``make_scenes(version=3)``
scenes labelled by shape, it prints the zero-shot accuracy (the world's prompt
templates), an image-only shrinkage LDA fitted on k shots per class, the best
accuracy of zero-shot logits plus LDA log-probabilities at any of a few weights (do
their errors differ?), and the same zero-shot / LDA pair on shifted test images
(greyscale, inverted, blurred, noisy, low contrast). On unshifted images it also splits
both accuracies between the shapes whose names captions use loosely
(``LOOSE_NAME_PAIRS``) and the others. The support comes from the first ``--pool``
scenes, the test rows are the rest.

Usage: python benchmarks/probe_headroom.py [--models skvlm-tiny,...] [--n 4000]
[--pool 1000] [--shots 16,64] [--seeds 3] [--shifts]
"""

import argparse
import warnings

import numpy as np


def _text_weights(encoder, names):
    from skvlm.datasets import zero_shot_class_names, zero_shot_templates

    templates = zero_shot_templates(3)["shape"]
    rows = []
    for name in zero_shot_class_names("shape", names):
        emb = encoder.encode_text([t.format(name) for t in templates])
        mean = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).mean(axis=0)
        rows.append(mean / np.linalg.norm(mean))
    return np.stack(rows)


def _shift(images, kind):
    x = images.astype(np.float32)
    if kind == "greyscale":
        x = np.repeat(x.mean(axis=-1, keepdims=True), 3, axis=-1)
    elif kind == "inverted":
        x = 255 - x
    elif kind == "blurred":
        from scipy.ndimage import uniform_filter

        x = uniform_filter(x, size=(1, 3, 3, 1))
    elif kind == "noisy":
        x = x + np.random.default_rng(0).normal(0, 30, x.shape)
    elif kind == "low contrast":
        x = 128 + 0.5 * (x - 128)
    return np.clip(x, 0, 255).astype(np.uint8)


def _lda_runs(X, y, pool, test, k, seeds):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        support = np.concatenate(
            [rng.choice(pool[y[pool] == c], k, replace=False) for c in np.unique(y)]
        )
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        yield lda.fit(X[support], y[support])


def probe(model, scenes, args):
    from skvlm import CLIPEncoder
    from skvlm.datasets._world import LOOSE_NAME_PAIRS

    y = np.asarray(scenes.codes["shape"])
    pool, test = np.arange(args.pool), np.arange(args.pool, len(y))
    loose = [shape for pair in LOOSE_NAME_PAIRS for shape in pair]
    paired = np.isin(np.asarray(scenes.factor_names["shape"])[y[test]], loose)
    encoder = CLIPEncoder(model=model, batch_size=256, cache=None)
    W = _text_weights(encoder, scenes.factor_names["shape"])
    for kind in ["none"] + (
        ["greyscale", "inverted", "blurred", "noisy", "low contrast"] if args.shifts else []
    ):
        X = encoder.encode_images(scenes.images if kind == "none" else _shift(scenes.images, kind))
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        logits = 100 * X[test] @ W.T
        correct = logits.argmax(1) == y[test]
        line = [f"{model:18s} {kind:12s} zero-shot {correct.mean():.3f}"]
        if kind == "none":
            line.append(
                f"(paired {correct[paired].mean():.3f}, other {correct[~paired].mean():.3f})"
            )
        for k in args.shots:
            accs, ensembles, split = [], [], []
            for lda in _lda_runs(X, y, pool, test, k, args.seeds):
                log_p = lda.predict_log_proba(X[test])
                correct = log_p.argmax(1) == y[test]
                accs.append(correct.mean())
                split.append((correct[paired].mean(), correct[~paired].mean()))
                if kind == "none":
                    ensembles.append(
                        max(
                            np.mean((logits + w * log_p).argmax(1) == y[test])
                            for w in (0.1, 0.3, 1, 3, 10, 30)
                        )
                    )
            line.append(f"LDA@{k} {np.mean(accs):.3f}")
            if kind == "none":
                on_pairs, elsewhere = np.mean(split, axis=0)
                line.append(f"(paired {on_pairs:.3f}, other {elsewhere:.3f})")
            if ensembles:
                line.append(f"best zero-shot + w LDA@{k} {np.mean(ensembles):.3f}")
        print(", ".join(line), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="skvlm-tiny,skvlm-tiny-slip,skvlm-tiny-align")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--shots", default="16,64")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shifts", action="store_true")
    args = parser.parse_args()
    args.shots = [int(k) for k in args.shots.split(",")]
    from skvlm.datasets import make_scenes

    scenes = make_scenes(args.n, random_state=777, version=3)
    print(
        f"{args.n} make_scenes(version=3) scenes (seed 777), shape labels, support from the "
        f"first {args.pool}, {args.seeds} seeds"
    )
    warnings.simplefilter("ignore", UserWarning)
    for model in args.models.split(","):
        probe(model, scenes, args)


if __name__ == "__main__":
    main()
