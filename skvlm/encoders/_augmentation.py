"""Train-time augmentation: random resized crops and flips, seeded per image."""

import math

import numpy as np


def _normalize_stats(preprocess):
    """(mean, std) of the Normalize step of a torchvision Compose."""
    for step in getattr(preprocess, "transforms", []):
        if type(step).__name__ == "Normalize":
            return tuple(step.mean), tuple(step.std)
    return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def _augmented_view(image, image_size, mean, std, rng):
    """Random resized crop (scale 0.5-1, as Tip-Adapter) + horizontal flip, from ``rng``."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    width, height = image.size
    area = width * height
    for _ in range(10):
        target_area = area * rng.uniform(0.5, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(round(math.sqrt(target_area * ratio)))
        h = int(round(math.sqrt(target_area / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            break
    else:
        h, w, top, left = height, width, 0, 0
    view = F.resized_crop(image, top, left, h, w, list(image_size), InterpolationMode.BICUBIC)
    if rng.random() < 0.5:
        view = F.hflip(view)
    tensor = F.to_tensor(view)
    return F.normalize(tensor, mean, std).to(torch.float32)


def augmented_features(encoder, images, keys, loaded):
    """Mean of ``n_augmentations`` views' normalised features, per decoded image."""
    import torch

    mean, std = _normalize_stats(loaded.preprocess)
    seed = 0 if encoder.random_state is None else encoder.random_state
    if isinstance(seed, np.random.RandomState):
        seed = int(seed.randint(2**31))
    total = None
    views = []
    for image, key in zip(images, keys):
        # Each image's views depend only on its content and the seed, so the result
        # does not depend on which other images share its batch.
        rng = np.random.default_rng([int(seed), int(key[:12], 16)])
        views.append(
            [
                _augmented_view(image, loaded.image_size, mean, std, rng)
                for _ in range(encoder.n_augmentations)
            ]
        )
    for view_index in range(encoder.n_augmentations):
        pixels = torch.stack([v[view_index] for v in views]).to(loaded.device)
        features = encoder._forward_images(loaded, pixels).float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        total = features if total is None else total + features
    return total / encoder.n_augmentations
