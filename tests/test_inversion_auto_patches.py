"""VisualInverter(n_patches="auto"): the reference's per-model pseudo-patch counts."""

import pytest

from skvlm import CLIPEncoder, VisualInverter
from skvlm.inversion import _auto_n_patches


@pytest.mark.parametrize(
    "name, pretrained, expected",
    [
        ("ViT-L-14", "openai", 4),  # CLIP ViT-L/14 (configs/ovi)
        ("ViT-B-16-SigLIP", "webli", 4),  # SigLIP B/16
        ("ViT-L-14", "laion2b_s32b_b82k", 2),  # OpenCLIP ViT-L/14
        ("SLIP-ViT-L-16", None, 2),  # SLIP L/16
        ("ViT-B-32", "openai", 1),  # CLIP ViT-B/32
        ("ViT-B-32", "laion2b_s34b_b79k", 1),  # OpenCLIP ViT-B/32
        ("SLIP-ViT-B-16", None, 1),  # SLIP B/16
        ("skvlm-tiny-slip", None, 1),
    ],
)
def test_auto_n_patches_follows_the_reference_configs(name, pretrained, expected):
    assert _auto_n_patches(name, pretrained) == expected


def test_auto_is_the_default_and_gives_one_patch_on_the_tiny_model():
    assert VisualInverter().n_patches == "auto"
    encoder = CLIPEncoder("skvlm-tiny", pretrained=None, device="cpu")
    ovi = VisualInverter(encoder, n_steps=2, random_state=0)
    auto = ovi.fit_transform(encoder.encode_text(["a red circle"]))
    one = VisualInverter(encoder, n_patches=1, n_steps=2, random_state=0).fit_transform(
        encoder.encode_text(["a red circle"])
    )
    assert (auto == one).all()
