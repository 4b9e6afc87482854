"""OTI throughput on skvlm-tiny: batched rows vs one row at a time, and the floor.

    python benchmarks/bench_inversion.py               # 64 rows, 150 steps
    python benchmarks/bench_inversion.py --threads 1   # on a busy machine

``TextualInverter`` optimises ``batch_size`` rows together. Printed: rows per
second with ``batch_size=64`` and with ``batch_size=1`` (the one-at-a-time rate is
timed on ``--single-rows`` rows), and the time per row against the model's own
cost, ``n_steps`` forward + backward passes of the text tower on a batch of 64
template sentences, which no implementation can beat. Each timing is the best of
``--repeat`` runs (the machine may be shared); the figures go to the README's
performance section.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _timing import best_of
from sklearn.base import clone

from skvlm import CLIPEncoder, TextualInverter
from skvlm.datasets import make_scenes
from skvlm.models import load_model


def text_tower_floor(loaded, n_rows, n_steps):
    """Seconds for n_steps forward+backward passes of the text tower on n_rows sentences."""
    tokens = loaded.tokenizer(["a photo of x"] * n_rows).to(loaded.device)
    weight = loaded.model.token_embedding.weight
    weight.requires_grad_(True)  # something to differentiate, as the pseudo tokens are
    try:
        start = time.perf_counter()
        for _ in range(n_steps):
            weight.grad = None
            with loaded.autocast():
                features = loaded.model.encode_text(tokens)
            features.float().sum().backward()
        return time.perf_counter() - start
    finally:
        weight.requires_grad_(False)
        weight.grad = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--single-rows", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--small",
        action="store_true",
        help="16 rows, 10 steps, one repeat: a few seconds (make bench, tests)",
    )
    args = parser.parse_args()
    if args.small:
        args.rows, args.single_rows, args.n_steps, args.repeat = 16, 2, 10, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    warnings.simplefilter("ignore")
    encoder = CLIPEncoder("skvlm-tiny", pretrained=None, device="cpu")
    images = encoder.transform(make_scenes(args.rows, random_state=0).images)
    print(
        f"skvlm-tiny (random init), {args.n_steps} steps, {torch.get_num_threads()} "
        f"torch thread(s), CPU"
    )

    oti = TextualInverter(encoder, n_steps=args.n_steps, batch_size=64, random_state=0)
    oti.fit(images)
    t_batched, batched = best_of(args.repeat, lambda: oti.transform(images))
    single = clone(oti).set_params(batch_size=1).fit(images)
    t_single, alone = best_of(args.repeat, lambda: single.transform(images[: args.single_rows]))
    t_single /= args.single_rows

    rows_batched = args.rows / t_batched
    print(f"batched (64): {rows_batched:.1f} rows/s ({t_batched / args.rows * 1e3:.1f} ms/row)")
    print(
        f"one at a time: {1 / t_single:.1f} rows/s ({t_single * 1e3:.0f} ms/row, "
        f"timed on {args.single_rows} rows)"
    )
    print(f"speed-up of batching: {rows_batched * t_single:.1f}x")
    diff = np.abs(alone - batched[: args.single_rows]).max()
    print(f"max |alone - batched| over those rows: {diff:.1e}")

    loaded = load_model("skvlm-tiny", None, "cpu", encoder.precision)
    floor = min(text_tower_floor(loaded, 64, args.n_steps) for _ in range(args.repeat)) / 64
    per_row = t_batched / args.rows
    print(
        f"floor ({args.n_steps} fwd+bwd of the text tower, batch 64): {floor * 1e3:.1f} ms/row; "
        f"OTI {per_row * 1e3:.1f} ms/row = {per_row / floor:.2f}x the floor"
    )
    cos = np.sum(batched * images, axis=1) / np.linalg.norm(images, axis=1)
    print(f"mean cosine(OTI text feature, image) = {cos.mean():.3f}")


if __name__ == "__main__":
    main()
