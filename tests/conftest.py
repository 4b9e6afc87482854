import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_images():
    """24 distinct 32x32 RGB images in 3 colour classes (8 per class), and labels."""
    rng = np.random.default_rng(0)
    colours = np.array([[220, 30, 30], [30, 200, 40], [40, 60, 210]])
    labels = np.repeat(np.array(["red", "green", "blue"]), 8)
    base = colours[np.repeat(np.arange(3), 8)][:, None, None, :]
    noise = rng.integers(-25, 26, size=(24, 32, 32, 3))
    images = np.clip(base + noise, 0, 255).astype(np.uint8)
    return images, labels


@pytest.fixture
def count_forward(monkeypatch):
    """Spy on a loaded model: count the rows that really go through each tower."""

    def install(loaded):
        counts = {"image": 0, "text": 0}
        encode_image, encode_text = loaded.model.encode_image, loaded.model.encode_text

        def counted_image(pixels, *args, **kwargs):
            counts["image"] += len(pixels)
            return encode_image(pixels, *args, **kwargs)

        def counted_text(tokens, *args, **kwargs):
            counts["text"] += len(tokens)
            return encode_text(tokens, *args, **kwargs)

        monkeypatch.setattr(loaded.model, "encode_image", counted_image)
        monkeypatch.setattr(loaded.model, "encode_text", counted_text)
        return counts

    return install
