"""Train an AlignCLIP-style model (shared towers + IMSep loss) on generated scenes.

AlignCLIP (Eslami & de Melo, ICLR 2025) shares the transformer and projection
between the image and text towers and adds an intra-modal separation loss. This
script trains skvlm's shared-tower tiny architecture with that loss for a few
steps, saves the weights, loads them back through CLIPEncoder, and reports the
modality gap and the alignment of matched pairs before and after training.

Run:  python examples/train_alignclip.py [--small]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from skvlm import CLIPEncoder
from skvlm.datasets import make_scenes
from skvlm.diagnostics import alignment_score, modality_gap
from skvlm.training import ContrastiveTrainer, build_tiny, save_tiny

MODEL = "skvlm-tiny-shared"


def geometry(weights, images, captions):
    encoder = CLIPEncoder(model=MODEL, pretrained=str(weights), device="cpu")
    image_emb = encoder.encode_images(images)
    text_emb = encoder.encode_text(captions)
    return modality_gap(image_emb, text_emb), alignment_score(image_emb, text_emb)


def _main(small, folder):
    n_steps, batch_size, n_train = (2, 16, 64) if small else (400, 128, 20000)
    train = make_scenes(n_train, random_state=0)
    held_out = make_scenes(200, random_state=1)

    model, tokenizer = build_tiny(MODEL, seed=0)
    before = save_tiny(model, tokenizer, folder / "before.safetensors")
    trainer = ContrastiveTrainer(
        model,
        tokenizer=tokenizer,
        loss="imsep",
        n_steps=n_steps,
        batch_size=batch_size,
        device="cpu",
        random_state=0,
    )
    start = time.perf_counter()
    trainer.fit(train.images, train.captions)
    seconds = time.perf_counter() - start
    after = save_tiny(model, tokenizer, folder / "after.safetensors")

    print(f"{MODEL}, loss='imsep', {n_steps} steps of {batch_size} pairs in {seconds:.1f} s")
    print(f"  loss: {trainer.loss_curve_[0]:.3f} -> {trainer.loss_curve_[-1]:.3f}")
    for name, weights in (("before", before), ("after", after)):
        gap, alignment = geometry(weights, held_out.images, held_out.captions)
        print(f"  {name:6s} modality gap = {gap:.3f}, alignment of matched pairs = {alignment:.3f}")
    print(f"  weights: {after}")
    return trainer


def main(small=False, out=None):
    """Run the example; without ``out`` its files go to a temporary folder removed at the end."""
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        return _main(small, Path(out))
    with tempfile.TemporaryDirectory(prefix="skvlm-alignclip-") as scratch:
        result = _main(small, Path(scratch))
        print("(the files above were temporary and are now removed: pass --out DIR to keep them)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run (seconds)")
    parser.add_argument(
        "--out",
        default=None,
        help="folder for the weights (default: a temporary folder, removed at the end)",
    )
    args = parser.parse_args()
    main(small=args.small or bool(os.environ.get("SKVLM_EXAMPLES_SMALL")), out=args.out)
