"""Does tuning on validation shots beat each adapter's defaults on the demo's world?

Not a timing benchmark: on the demo's held-out scenes (``make_scenes(version=3)``, seed
10000) embedded by ``skvlm-tiny``, labelled by shape, it runs ``run_fewshot_study``
with ``compare_untuned=True`` over more seeds than the demo's three, under each
selection rule, and prints each method's tuned-minus-untuned gain averaged over the
shot counts: its mean and spread over seeds, how many seeds lose, and the gain per
shot count.

``--scene-seed`` draws other scenes than the demo's, to judge a selection rule on
scenes it was not chosen on.

Usage: python benchmarks/probe_tuning.py [--seeds 10] [--selections one_se,best,paired]
[--methods lda,tip_adapter,tip_x,ape,coder] [--model skvlm-tiny] [--scene-seed 10000]
"""

import argparse
import warnings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--selections", default="one_se,best,paired")
    parser.add_argument("--methods", default="lda,tip_adapter,tip_x,ape,coder")
    parser.add_argument("--model", default="skvlm-tiny")
    parser.add_argument("--scene-seed", type=int, default=10_000, help="the demo's: 10000")
    args = parser.parse_args()
    from skvlm import CLIPEncoder
    from skvlm.datasets import make_scenes, zero_shot_class_names, zero_shot_templates
    from skvlm.studies import run_fewshot_study
    from skvlm.studies._zoo import class_weights  # the demo's text classifier

    warnings.simplefilter("ignore", UserWarning)
    scenes = make_scenes(3000, random_state=args.scene_seed, version=3)
    encoder = CLIPEncoder(model=args.model, cache=None)
    X = encoder.transform(scenes.images)
    names = zero_shot_class_names("shape", scenes.factor_names["shape"])
    weights, _ = class_weights(encoder.encode_text, names, zero_shot_templates(3)["shape"])
    methods = args.methods.split(",")
    print(
        f"{args.model}, 3000 scenes of world 3 (seed {args.scene_seed}), shape, "
        f"seeds 0-{args.seeds - 1}"
    )
    for selection in args.selections.split(","):
        runs = run_fewshot_study(
            X,
            scenes.codes["shape"],
            text_weights=weights,
            methods=methods,
            seeds=list(range(args.seeds)),
            selection=selection,
            compare_untuned=True,
        )
        for method in methods:
            rows = runs[runs.method == method]
            gain = 100 * (rows.acc1 - rows.acc1_untuned)
            per_seed = gain.groupby(rows.seed).mean()
            per_shots = gain.groupby(rows.shots).mean().round(2).to_dict()
            print(
                f"{selection:6s} {method:11s} tuned - untuned {per_seed.mean():+.2f} pts "
                f"(sd over seeds {per_seed.std():.2f}, {int((per_seed < 0).sum())}/{args.seeds} "
                f"seeds below zero); per shots {per_shots}",
                flush=True,
            )


if __name__ == "__main__":
    main()
