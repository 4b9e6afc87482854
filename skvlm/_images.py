"""Turn any accepted image input into a correct 8-bit RGB PIL image, or say why not.

The rules, each chosen so that the model sees what a person looking at the file sees:

* The file is fully decoded inside a ``try``; truncated, corrupt and non-image files
  are an :class:`UnreadableImageError` that names the file. Pillow's
  ``LOAD_TRUNCATED_IMAGES`` is never switched on (a half-grey image is a wrong input,
  not a readable one).
* Images with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow's
  decompression-bomb limit, about 89 megapixels) are refused from their header, before
  anything is decoded. Pillow's own ``DecompressionBombWarning`` (and, past twice the
  limit, ``DecompressionBombError``) become this one error, which says how to raise
  the limit.
* So are images that the model's shortest-side resize would blow up past that limit:
  a 1x100000 strip is a 178-byte PNG, but resized to a 224-pixel short side it is a
  224x22400000 image (15 GB). Only absurd aspect ratios are affected (over about
  1800:1 at 224 pixels).
* EXIF orientation is applied, so a phone photo is upright.
* Transparency (RGBA, LA, PA, palette images with a transparent index or an RGBA
  palette, a transparent colour key, HxWx4 arrays) is composited over white, as an
  image viewer shows it. (open_clip's own ``convert("RGB")`` keeps the hidden colour
  of transparent pixels instead, often black.)
* 16-bit greyscale (``I;16`` and 16-bit data in ``I``) is scaled to 8 bits
  (65535 -> 255); Pillow's ``convert("RGB")`` would clip it to white. An ``I`` image
  whose values all fit in 0-255 is taken as 8-bit data (that is what ``convert("I")``
  of an 8-bit image gives; a real 16-bit image that dark is all but black anyway).
  Float images (``F``) are taken as [0, 1] intensities, or as [0, 255] when some value
  exceeds 1; other ranges, NaN and infinities are refused.
* CMYK, YCbCr, LAB, HSV, greyscale and 1-bit images are converted with Pillow.
"""

import io
import math
import os
import re
import warnings

import numpy as np

_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class UnreadableImageError(ValueError):
    """An image that cannot be decoded, or that skvlm refuses to decode (too large)."""


def load_rgb(item, name=None, resized_side=None, content=None):
    """An RGB PIL image from a path, a PIL image or an HxW[x1|3|4] uint8 array.

    Parameters
    ----------
    item : str, path, PIL.Image.Image or ndarray
    name : str, optional
        How errors refer to an in-memory item (e.g. ``"item 3"``); files are named
        by their path.
    resized_side : int, optional
        The length the model's preprocessing resizes the shorter side to; images it
        would blow up past ``PIL.Image.MAX_IMAGE_PIXELS`` are refused.
    content : bytes, optional
        The bytes of the file ``item`` names, already read: they are decoded instead
        of the file, so the image is exactly the bytes a cache key was made from.

    Returns
    -------
    PIL.Image.Image in mode ``"RGB"``
    """
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        return _load_file(os.fspath(item), resized_side, content)
    name = name or "<in-memory image>"
    if isinstance(item, Image.Image):
        described = getattr(item, "filename", "") or name

        def decode_image():
            _check_resized_size(item.size, resized_side, described)
            return _to_rgb(_loaded(item))

        return _decoded(decode_image, described)

    def decode_array():
        rgb = _array_to_rgb(item)
        _check_resized_size(rgb.size, resized_side, name)
        return rgb

    return _decoded(decode_array, name)


def require_file(path):
    """Raise unless ``path`` is a regular file, saying what is there instead.

    Nothing there, or a symbolic link that leads nowhere, is a FileNotFoundError; a
    directory, pipe or device is an UnreadableImageError (opening a pipe would block).
    """
    if os.path.isfile(path):
        return
    if os.path.exists(path):
        kind = (
            "a directory"
            if os.path.isdir(path)
            else "not a regular file (a pipe, socket or device)"
        )
        raise UnreadableImageError(f"Cannot read image {path!r}: it is {kind}.")
    if os.path.lexists(path):
        raise FileNotFoundError(
            f"Image file not found: {path!r} is a symbolic link that leads nowhere "
            "(broken, or a loop)."
        )
    raise FileNotFoundError(f"Image file not found: {path!r}.")


def pil_identity(image, name):
    """Bytes that identify what the model sees of an in-memory PIL image.

    The converted RGB pixels, not the stored ones: two images with the same palette
    indices but different palettes, or the same pixels under different EXIF
    orientations, look different and must not share a cache entry.
    """
    rgb = load_rgb(image, name)
    return f"{rgb.size}:".encode() + rgb.tobytes()


def _load_file(path, resized_side=None, content=None):
    from PIL import UnidentifiedImageError

    if content is None:
        require_file(path)
    if (len(content) if content is not None else os.path.getsize(path)) == 0:
        raise UnreadableImageError(f"Cannot read image {path!r}: the file is empty (0 bytes)")
    source = path if content is None else io.BytesIO(content)

    def decode():
        try:
            opened = _opened_quietly(source)
        except UnidentifiedImageError:  # Pillow's message would name a BytesIO object
            raise UnreadableImageError(
                f"Cannot read image {path!r}: it is not an image file in a format Pillow "
                "reads (its first bytes match none)."
            ) from None
        with opened as image:
            _check_size(image, repr(path))
            _check_resized_size(image.size, resized_side, repr(path))
            return _to_rgb(_loaded(image))

    return _decoded(decode, repr(path))


def _opened_quietly(path):
    """``Image.open`` (header only) without its DecompressionBombWarning.

    _check_size refuses those images right after, with a clearer message; Pillow's
    warning would only repeat it (or, under ``-W error``, pre-empt it). The filter
    covers the header read alone: ``catch_warnings`` is process-wide state.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _decoded(decode, described):
    """Run ``decode``; any decoding failure becomes an error naming the image."""
    from PIL import Image

    try:
        return decode()
    except (UnreadableImageError, MemoryError):
        raise
    except Image.DecompressionBombError as exc:  # over twice the limit: refused in open()
        # Pillow's message quotes twice the limit; name the setting the user can change.
        raise UnreadableImageError(
            f"Image {described} is too large: {exc} (Pillow refuses images over twice "
            f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}). {_RAISE_LIMIT}"
        ) from None
    except Exception as exc:  # Pillow's plugins raise OSError, SyntaxError, ValueError...
        reason = str(exc).strip() or type(exc).__name__
        # Bytes decoded from memory: Pillow names the buffer's address, not the file.
        reason = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", reason)
        raise UnreadableImageError(f"Cannot read image {described}: {reason}") from None


_RAISE_LIMIT = (
    "If the file is trusted, raise the limit: PIL.Image.MAX_IMAGE_PIXELS = <pixels> "
    "(None removes it)."
)


def _check_size(image, described):
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit is not None and width * height > limit:
        raise UnreadableImageError(
            f"Image {described} has {width}x{height} = {width * height} pixels, more than "
            f"PIL.Image.MAX_IMAGE_PIXELS = {limit} (Pillow's decompression-bomb limit). "
            + _RAISE_LIMIT
        )


def _check_resized_size(size, side, described):
    """Refuse an image that resizing its shorter side to ``side`` makes a bomb of."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    width, height = size
    if side is None or limit is None or min(width, height) == 0:
        return  # (an empty image is refused, with that reason, when decoded)
    long_side = math.ceil(max(width, height) * side / min(width, height))
    if side * long_side > limit:
        resized = f"{long_side}x{side}" if width >= height else f"{side}x{long_side}"
        raise UnreadableImageError(
            f"Image {described} is {width}x{height}: the model's preprocessing resizes "
            f"its shorter side to {side}, which would make it {resized} = "
            f"{side * long_side} pixels, more than PIL.Image.MAX_IMAGE_PIXELS = {limit}. "
            "Crop it to a less extreme aspect ratio, or raise the limit."
        )


def _loaded(image):
    image.load()  # decode everything now, so that a truncated file fails here
    return image


def _to_rgb(image):
    from PIL import ImageOps

    if image.width == 0 or image.height == 0:
        raise ValueError(f"the image is empty ({image.width}x{image.height})")
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a damaged EXIF block: keep the pixels as stored
        pass
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I;16") or mode == "I":
        return _deep_grey_to_rgb(np.asarray(image), mode, image.info.get("transparency"))
    if mode == "F":
        return _float_grey_to_rgb(np.asarray(image, dtype=np.float32))
    if image.mode == "La":
        image = image.convert("LA")  # Pillow converts premultiplied La to LA only
    if _has_transparency(image):
        return _over_white(image.convert("RGBA"))
    return image.convert("RGB")


def _has_transparency(image):
    """An alpha channel, a palette with alpha, or a transparent index or colour key.

    (Pillow >= 10.1 has ``Image.has_transparency_data``; skvlm supports Pillow 9.)
    """
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        return True
    palette = image.palette if image.mode == "P" else None
    return palette is not None and palette.mode.endswith("A")


def _over_white(rgba):
    from PIL import Image

    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _grey_to_rgb(values):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8), mode="L").convert("RGB")


def _deep_grey_to_rgb(values, mode, colour_key=None):
    values = values.astype(np.int64)
    if values.min() < 0 or values.max() > 65535:
        raise ValueError(
            f"{mode} pixels range over [{values.min()}, {values.max()}], outside 8- or 16-bit"
        )
    if mode == "I" and values.max() <= 255:
        grey = values  # 8-bit data stored in a 32-bit mode
    else:
        grey = np.rint(values / 257.0)  # 65535 / 257 = 255 exactly
    if isinstance(colour_key, int):  # a 16-bit PNG's transparent grey: white, as for L
        grey = np.where(values == colour_key, 255, grey)
    return _grey_to_rgb(grey)


def _float_grey_to_rgb(values):
    if not np.isfinite(values).all():
        raise ValueError("the float image holds NaN or infinite pixels")
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 1:
        return _grey_to_rgb(np.rint(values * 255))
    if low >= 0 and high <= 255:
        return _grey_to_rgb(np.rint(values))
    raise ValueError(f"float pixels range over [{low:g}, {high:g}]; expected [0, 1] or [0, 255]")


def _array_to_rgb(array):
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(
            f"image arrays must be uint8 (0-255), got dtype {array.dtype}; convert with "
            "(array * 255).round().astype(np.uint8) if it holds values in [0, 1]"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(
            f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"the image array is empty, shape {array.shape}")
    image = Image.fromarray(np.ascontiguousarray(array))
    return _over_white(image) if image.mode == "RGBA" else image.convert("RGB")
