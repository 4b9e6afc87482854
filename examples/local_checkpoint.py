"""Use a real open_clip architecture with a local checkpoint file, fully offline.

On a machine without network access, copy a checkpoint file (``.safetensors``,
``.pt`` or ``.bin``) and pass its path as ``pretrained``. To stay offline and
small, this script makes such a file itself: it saves the state dict of a
randomly initialised open_clip ``ViT-S-32-alt`` to a temporary file, then loads
it back through ``CLIPEncoder(model=..., pretrained=path)`` and runs a zero-shot
classification. (Random weights give chance-level accuracy; with a trained file
the same lines give the model's real accuracy.)

Run:  python examples/local_checkpoint.py [--small] [--model NAME]
"""

import argparse
import os
import tempfile
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

from skvlm import CLIPEncoder, ZeroShotClassifier
from skvlm.datasets import make_scenes


def make_checkpoint(model_name, path):
    """Save a seeded random initialisation of ``model_name`` as safetensors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model(model_name, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def main(small=False, model="ViT-S-32-alt"):
    n_samples = 16 if small else 200
    with tempfile.TemporaryDirectory(prefix="skvlm-checkpoint-") as scratch:  # removed at the end
        checkpoint = make_checkpoint(model, Path(scratch) / f"{model}.safetensors")
        print(f"checkpoint: {checkpoint} ({checkpoint.stat().st_size / 2**20:.0f} MiB)")
        encoder = CLIPEncoder(model=model, pretrained=str(checkpoint), device="cpu", batch_size=16)
        scenes = make_scenes(n_samples, random_state=0, version=3)  # the zoo's world
        X = encoder.transform(scenes.images)  # 32x32 scenes, resized to 224x224
        y = scenes.factors["colour"].to_numpy()
        classes = sorted(set(y))
        clf = ZeroShotClassifier(
            class_names=classes, templates=["a photo of a {} object."], encoder=encoder
        ).fit(X, y)
        accuracy = clf.score(X, y)
    print(
        f"{model}: embeddings {X.shape}, zero-shot colour accuracy = {accuracy:.3f}"
        f" (chance {1 / len(classes):.3f})"
    )
    return X


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run")
    parser.add_argument("--model", default="ViT-S-32-alt", help="an open_clip architecture")
    args = parser.parse_args()
    main(small=args.small or bool(os.environ.get("SKVLM_EXAMPLES_SMALL")), model=args.model)
