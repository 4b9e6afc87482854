"""ImageEncoder: images through a timm backbone (DINOv2 and friends), pooled features."""

from ._base import _BaseEncoder


class ImageEncoder(_BaseEncoder):
    """Embed images with a timm backbone (DINOv2, ViT, ConvNeXt...), pooled features.

    Parameters
    ----------
    model : str, default="vit_small_patch14_dinov2.lvd142m"
        A timm model name (``timm.list_models()``), or skvlm's own image-only
        ``"skvlm-tiny-ssl"`` (a SimCLR encoder trained on ``make_scenes(version=2)``,
        shipped in the package; no timm needed).
    pretrained : bool, "default", path or None, default="default"
        ``"default"``/``True`` loads timm's pretrained weights (network or the local
        hub cache); a path loads a local weights file; ``None``/``False`` is a random
        initialisation (seed 0).
    batch_size, device, precision, normalize, cache, n_augmentations, on_error, random_state, verbose, n_jobs
        As in :class:`CLIPEncoder`.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import ImageEncoder
    >>> encoder = ImageEncoder(model="test_vit", pretrained=None, device="cpu")
    >>> encoder.transform(np.zeros((1, 32, 32, 3), dtype=np.uint8)).shape
    (1, 64)
    """

    _kind = "timm"

    def __init__(
        self,
        model="vit_small_patch14_dinov2.lvd142m",
        *,
        pretrained="default",
        batch_size=64,
        device="auto",
        precision="auto",
        normalize=True,
        cache=None,
        n_augmentations=0,
        on_error="raise",
        random_state=None,
        verbose=0,
        n_jobs=None,
    ):
        self.model = model
        self.pretrained = pretrained
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.normalize = normalize
        self.cache = cache
        self.n_augmentations = n_augmentations
        self.on_error = on_error
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _forward_images(self, loaded, pixels):
        return loaded.model(pixels.to(loaded.device, loaded.dtype))
