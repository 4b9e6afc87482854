"""The ``train-tiny`` sub-command of ``python -m skvlm``."""

import json


def add_train_tiny_parser(subparsers):
    """Register ``train-tiny`` on an argparse ``subparsers`` object.

    The parser's ``func`` default runs the command: ``args.func(args)``.
    """
    from ._recipes import RECIPES

    parser = subparsers.add_parser(
        "train-tiny",
        help="train a shipped tiny model on generated scenes (reproducible)",
        description=(
            "Train a model of the tiny zoo (skvlm-tiny: CLIP loss; skvlm-tiny-slip: CLIP + "
            "SimCLR; skvlm-tiny-shared: SharedCLIP + CLIP loss; skvlm-tiny-align: AlignCLIP; "
            "skvlm-tiny-ssl: image-only SimCLR) on fresh make_scenes(version=3) batches for "
            "a fixed number of steps, evaluate it on held-out scenes and save it as "
            "safetensors. With --checkpoint and --resume a killed run continues identically."
        ),
    )
    parser.add_argument("--name", choices=sorted(RECIPES), default="skvlm-tiny")
    parser.add_argument(
        "--out",
        default=None,
        help="output .safetensors (default: the file shipped in the package)",
    )
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="trainer checkpoint file (.pt)")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fp16", action="store_true", help="store weights in float16")
    parser.add_argument("--eval-samples", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=run_train_tiny)
    return parser


def run_train_tiny(args):
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    from ._tiny import train_tiny

    report = train_tiny(
        name=args.name,
        out=args.out,
        n_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        device=args.device,
        fp16=args.fp16,
        eval_samples=args.eval_samples,
        verbose=0 if args.quiet else 1,
    )
    print(json.dumps(report, indent=2))
    return 0


def main(argv=None):
    """Parse ``argv`` (the arguments after ``train-tiny``) and run; returns the exit status."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m skvlm")
    add_train_tiny_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train-tiny", *(argv or [])])
    return args.func(args)
