"""Diagnostics of the embedding space, with plots (Herzog & Wang 2026, Figs. 2 and 5).

Encodes scenes and their captions, then

- draws the cosine-similarity histograms by class and by modality,
- measures the modality gap and the alignment of matched image-caption pairs,
- recovers the image-image similarities from the image-text ones alone (App. A).

Writes PNG files to --out (default: a temporary folder, removed at the end).

Run:  python examples/diagnostics_plots.py [--small] [--out DIR]
"""

import argparse
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skvlm import CLIPEncoder  # noqa: E402
from skvlm.datasets import make_scenes  # noqa: E402
from skvlm.diagnostics import (  # noqa: E402
    alignment_score,
    modality_gap,
    recover_intra_similarity,
    similarity_distributions,
)
from skvlm.plotting import plot_similarity_histograms  # noqa: E402


def _main(small, folder):
    n_samples = 300 if small else 2500
    scenes = make_scenes(n_samples, random_state=0, version=3)  # the zoo's world
    labels = scenes.factors["shape"].to_numpy()
    encoder = CLIPEncoder(model="skvlm-tiny", device="cpu")
    images = encoder.encode_images(scenes.images)
    captions = encoder.encode_text(scenes.captions)

    distributions = similarity_distributions(
        images, labels, captions, labels, max_pairs=20000, random_state=0
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    plot_similarity_histograms(
        distributions,
        keys=["intra_class", "inter_class"],
        ax=axes[0],
        title="by class (image-image)",
    )
    plot_similarity_histograms(
        distributions, keys=["intra_modal", "inter_modal"], ax=axes[1], title="by modality"
    )
    fig.tight_layout()
    histograms = folder / "similarity_histograms.png"
    fig.savefig(histograms, dpi=100)
    plt.close(fig)

    print(f"modality gap        = {modality_gap(images, captions):.3f}")
    print(f"alignment (matched) = {alignment_score(images, captions):.3f}")

    # Appendix A: S_intra is fixed by S_inter (texts against images). Recovery needs
    # d(d+1)/2 images in general position: 2080 for the 64-d tiny model. The quick run
    # works in a 16-d subspace instead (rows re-normalised), where 136 suffice.
    if small:
        _, _, basis = np.linalg.svd(np.vstack([images, captions]), full_matrices=False)
        images, captions = (E @ basis[:16].T for E in (images, captions))
        images, captions = (
            E / np.linalg.norm(E, axis=1, keepdims=True) for E in (images, captions)
        )
    I64, T64 = images.astype(np.float64), captions.astype(np.float64)
    recovered = recover_intra_similarity(T64 @ I64.T)
    error = np.abs(recovered - I64 @ I64.T).max()
    print(
        f"S_intra recovered from S_inter (d = {images.shape[1]}, {len(images)} images): "
        f"max abs error = {error:.1e}"
    )
    print(f"figure: {histograms}")
    return histograms


def main(small=False, out=None):
    """Run the example; without ``out`` its files go to a temporary folder removed at the end."""
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        return _main(small, Path(out))
    with tempfile.TemporaryDirectory(prefix="skvlm-diagnostics-") as scratch:
        result = _main(small, Path(scratch))
        print("(the files above were temporary and are now removed: pass --out DIR to keep them)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run (seconds)")
    parser.add_argument("--out", default=None, help="folder for the PNG files")
    args = parser.parse_args()
    main(small=args.small or bool(os.environ.get("SKVLM_EXAMPLES_SMALL")), out=args.out)
