"""CLIPEncoder: images and texts through an open_clip model (or skvlm's own)."""

from .._sklearn import StrOptions
from ._base import _BaseEncoder
from ._inputs import _as_items, _missing_path_error, _split_modality


class CLIPEncoder(_BaseEncoder):
    """Embed images and texts with a CLIP-style model (open_clip or skvlm's own).

    Parameters
    ----------
    model : str, default="ViT-B-32"
        An open_clip architecture (see ``skvlm.models.list_models()``) or skvlm's
        ``"skvlm-tiny"`` / ``"skvlm-tiny-shared"``, which ship inside the package.
    pretrained : str, path or None, default="default"
        An open_clip tag (``"openai"``, ``"laion2b_s34b_b79k"``...), a local checkpoint
        file, ``None`` for a random initialisation (seed 0), or ``"default"``: the
        model's standard weights ("openai" where open_clip has it, else its first
        tag; the shipped file for skvlm's own models).
    modality : {"auto", "image", "text"}, default="auto"
        ``"auto"`` treats strings that are existing files as images and other strings
        as text; mixing both in one call is an error.
    batch_size : int, default=64
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    precision : {"auto", "fp32", "fp16", "bf16"}, default="auto"
        The precision of the model's weights. ``"auto"`` is the fastest that keeps
        results: half-precision weights on CUDA (bf16 where the GPU has bf16 units,
        else fp16; layer norms stay fp32, as in open_clip's own ``precision``), bf16
        weights on a CPU with native bf16 matrix units (AMX or AVX512-BF16), fp32
        elsewhere. Half-precision kernels may round a row differently with the size
        of the batch it is encoded in (on an AMX CPU, up to 1e-3 per coordinate of
        ``skvlm-tiny``'s unit-norm rows, measured): rows cached from batches of other
        sizes agree to that level. ``"fp32"`` is exact. The precision is part of
        every cache key. A precision the device cannot run (fp16 on the CPU, bf16 on
        a GPU older than Ampere) is a ``ValueError``.
    normalize : bool, default=True
        L2-normalise each output row.
    cache : None, "memory", str, path or joblib.Memory, default=None
        Content-addressed embedding cache: ``"memory"`` keeps embeddings in this
        process; a directory (or a ``joblib.Memory``'s location) also stores them on
        disk, one checksummed file per embedding written atomically, so a second run
        does not run the model at all and several processes can share the folder.
        Damaged entries are recomputed with a ``CacheCorruptionWarning``.
    n_augmentations : int, default=0
        In ``fit_transform`` only, average the normalised features of this many random
        views (resized crop with scale 0.5-1 and a horizontal flip, as Tip-Adapter
        builds its cache) of each image. Off by default; it usually helps
        cache-based classifiers a little and costs ``n_augmentations`` forward passes.
    on_error : {"raise", "skip"}, default="raise"
        What an unreadable image (missing, truncated, corrupt, or over Pillow's
        decompression-bomb limit) does: ``"raise"`` an error naming the file (or the
        position of an in-memory image); ``"skip"`` drop it, list every dropped item
        in one ``UnreadableImageWarning``, and return only the readable rows (get their
        positions with ``transform(X, return_indices=True)``). Texts never fail.
    random_state : int, RandomState or None, default=None
        Seeds the augmentations (only used when ``n_augmentations > 0``).
    verbose : int, default=0
        Show a progress bar over batches.
    n_jobs : int or None, default=None
        Threads that decode and preprocess images while the model runs the previous
        batch. None keeps the model busy: up to 8 threads beside a GPU, up to 4 on
        the CPU, never more than the cores; 1 decodes in the calling thread; -1 uses
        every core. The rows, their order and ``on_error="skip"`` do not depend on it.

    Attributes
    ----------
    The model is loaded lazily on first use from a process-wide cache; the encoder
    has no fitted state, and pickles without its weights.

    Notes
    -----
    **Image inputs** are decoded as a person sees them: EXIF orientation is applied,
    transparency is composited over white (open_clip's ``convert("RGB")`` keeps the
    hidden colour of transparent pixels instead), 16-bit greyscale is scaled to 8 bits
    (not clipped to white), float images are read as [0, 1] (or [0, 255]) intensities,
    CMYK and palette images are converted to RGB. A truncated, corrupt or non-image
    file, one over ``PIL.Image.MAX_IMAGE_PIXELS`` (checked before decoding), or a
    strip the model's resize would blow up past that limit is an
    ``UnreadableImageError`` (a ``ValueError``) naming it, never a partly grey image.

    Examples
    --------
    >>> import numpy as np
    >>> from skvlm import CLIPEncoder
    >>> encoder = CLIPEncoder(model="skvlm-tiny", pretrained=None, device="cpu")
    >>> images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    >>> encoder.transform(images).shape
    (2, 64)
    >>> emb = encoder.encode_text(["a photo of a red circle"])
    >>> round(float(np.linalg.norm(emb)), 5)
    1.0
    """

    _parameter_constraints = {
        **_BaseEncoder._parameter_constraints,
        "modality": [StrOptions({"auto", "image", "text"})],
    }

    def __init__(
        self,
        model="ViT-B-32",
        *,
        pretrained="default",
        modality="auto",
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
        self.modality = modality
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

    def encode_text(self, texts):
        """Embed strings with the text tower (whatever ``modality`` says).

        Returns
        -------
        ndarray of shape (n_texts, embed_dim), float32
        """
        self._validate_params()
        items = _as_items(texts)
        if items and not all(isinstance(t, str) for t in items):
            raise ValueError("encode_text takes strings only.")
        return self._encode_items(items, augment=False, modality="text")[0]

    def encode_images(self, images, return_indices=False):
        """Embed images with the image tower (whatever ``modality`` says).

        ``return_indices`` is as in :meth:`transform` (it matters with
        ``on_error="skip"``).

        Returns
        -------
        embeddings : ndarray of shape (n_kept, embed_dim), float32
        kept_indices : ndarray of shape (n_kept,), int
            Only with ``return_indices=True``.
        """
        self._validate_params()
        embeddings, kept = self._encode_items(_as_items(images), augment=False, modality="image")
        return (embeddings, kept) if return_indices else embeddings

    def _modality_of(self, items, modality=None):
        kind = _split_modality(items, modality or self.modality)
        if kind == "image" and (modality or self.modality) == "auto" and self.on_error == "raise":
            error = _missing_path_error(items)  # a guess, so the error says how to overrule it
            if error is not None:
                raise error
        return kind
