"""Hostile and unusual image files: decoded correctly, or refused with the file named."""

import io
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from skvlm import CLIPEncoder
from skvlm._images import load_rgb
from skvlm.encoders import UnreadableImageError, UnreadableImageWarning

TINY = dict(model="skvlm-tiny", device="cpu")


def _gradient(height=24, width=40):
    """An RGB image with no symmetry, so any rotation or flip changes it."""
    rows = np.arange(height)[:, None] * 9
    cols = np.arange(width)[None, :] * 5
    channels = [rows + 0 * cols, cols + 0 * rows, (rows + cols) % 256]
    return np.stack(channels, axis=-1).astype(np.uint8)


def _save(tmp_path, name, image, **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


# ----------------------------------------------------------------------------- refused


def _truncated(tmp_path, fmt):
    path = _save(tmp_path, f"whole.{fmt}", Image.fromarray(_gradient(64, 64)))
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut


def _written(path, content):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: _truncated(tmp, "jpg"),
        lambda tmp: _truncated(tmp, "png"),
        lambda tmp: _written(tmp / "noise.png", np.random.default_rng(0).bytes(500)),
        lambda tmp: _written(tmp / "empty.jpg", b""),
        lambda tmp: _written(tmp / "notes.jpg", b"not a picture"),
    ],
    ids=["truncated-jpeg", "truncated-png", "random-bytes", "zero-bytes", "text-file"],
)
def test_unreadable_files_are_refused_with_their_name(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(UnreadableImageError) as info:
        load_rgb(str(path))
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=path.name):
        CLIPEncoder(**TINY).transform([str(path)])


def test_an_oversized_image_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    path = _save(tmp_path, "big.png", Image.fromarray(_gradient(40, 50)))
    decoded = []
    real_load = Image.Image.load

    def spy(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    # 2000 pixels: over the limit (Pillow warns), then over twice the limit (Pillow
    # raises in open()); both come out as one error, and Pillow's warning stays inside.
    for limit, size in [(1000, "50x40 = 2000 pixels"), (999, "2000 pixels")]:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(UnreadableImageError, match="MAX_IMAGE_PIXELS") as info:
                load_rgb(str(path))
        assert "big.png" in str(info.value) and size in str(info.value)
        assert "raise the limit" in str(info.value)
        assert f"MAX_IMAGE_PIXELS = {limit}" in str(info.value)  # not Pillow's 2x figure
    assert decoded == []
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # exactly at the limit: allowed
    assert load_rgb(str(path)).size == (50, 40)
    # (1900, not lower: the good 24x40 image, resized to 32x54, is checked against it too)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1900)
    with pytest.warns(UnreadableImageWarning, match="big.png.*MAX_IMAGE_PIXELS"):
        _, kept = CLIPEncoder(**TINY, on_error="skip").transform(
            [str(path), _gradient()], return_indices=True
        )
    assert kept.tolist() == [1]


def test_a_thin_strip_the_model_would_blow_up_is_refused(tmp_path, monkeypatch):
    # The tiny model resizes the shorter side to 32: a 2x400 strip would become
    # 32x6400 = 204800 pixels, over a limit of 20000; the strip itself has 800.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000)
    strip = _save(tmp_path, "strip.png", Image.fromarray(_gradient(2, 400)))
    assert load_rgb(str(strip)).size == (400, 2)  # fine as an image, only not for a model
    with pytest.raises(UnreadableImageError, match=r"strip.png.*400x2.*6400x32 = 204800"):
        CLIPEncoder(**TINY).transform([str(strip)])
    for in_memory in (_gradient(400, 2), Image.fromarray(_gradient(400, 2))):
        with pytest.raises(UnreadableImageError, match=r"item 1 is 2x400.*32x6400"):
            CLIPEncoder(**TINY).transform([_gradient(), in_memory])
    with pytest.warns(UnreadableImageWarning, match="strip.png"):
        out, kept = CLIPEncoder(**TINY, on_error="skip").transform(
            [str(strip), _gradient()], return_indices=True
        )
    assert kept.tolist() == [1] and np.isfinite(out).all()


def test_only_a_shortest_side_resize_counts_as_a_blow_up():
    from torchvision import transforms

    from skvlm.encoders import _resized_side

    assert _resized_side(transforms.Compose([transforms.Resize(224)])) == 224
    assert _resized_side(transforms.Compose([transforms.Resize([96])])) == 96
    assert _resized_side(transforms.Compose([transforms.Resize((224, 224))])) is None
    assert _resized_side(transforms.Compose([transforms.Resize(224, max_size=300)])) is None
    assert _resized_side(transforms.Compose([transforms.CenterCrop(224)])) is None


def test_paths_that_are_not_files_say_what_they_are(tmp_path):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "broken.png").symlink_to(tmp_path / "nowhere.png")
    for name, error, reason in [
        ("folder.png", UnreadableImageError, "is a directory"),
        ("loop.png", FileNotFoundError, "symbolic link that leads nowhere"),
        ("broken.png", FileNotFoundError, "symbolic link that leads nowhere"),
    ]:
        for cache in (None, "memory"):
            with pytest.raises(error, match=f"{name}.*{reason}"):
                CLIPEncoder(**TINY, cache=cache).transform([str(tmp_path / name)])
    good = _save(tmp_path, "good.png", Image.fromarray(_gradient()))
    items = [str(tmp_path / name) for name in ("folder.png", "loop.png")] + [str(good)]
    with pytest.warns(UnreadableImageWarning, match="folder.png.*loop.png"):
        _, kept = CLIPEncoder(**TINY, on_error="skip").transform(items, return_indices=True)
    assert kept.tolist() == [2]


def test_a_file_that_cannot_be_opened_is_unreadable_with_a_cache_too(tmp_path, monkeypatch):
    from skvlm.encoders import _inputs

    good = _save(tmp_path, "good.png", Image.fromarray(_gradient()))
    locked = _save(tmp_path, "locked.png", Image.fromarray(_gradient()))

    def refusing_open(path, *args, **kwargs):  # chmod 000 means nothing to root
        if os.fspath(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return open(path, *args, **kwargs)

    # The cache reads a file's bytes for its key before anything decodes it.
    monkeypatch.setattr(_inputs, "open", refusing_open, raising=False)
    with pytest.raises(UnreadableImageError, match="locked.png.*Permission denied"):
        CLIPEncoder(**TINY, cache="memory").transform([str(locked)])
    encoder = CLIPEncoder(**TINY, cache="memory", on_error="skip")
    with pytest.warns(UnreadableImageWarning, match="locked.png"):
        _, kept = encoder.transform([str(locked), str(good)], return_indices=True)
    assert kept.tolist() == [1]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # opening it to read would wait for a writer
    with pytest.raises(UnreadableImageError, match="pipe.png.*not a regular file"):
        CLIPEncoder(**TINY).transform([str(tmp_path / "pipe.png")])


def test_bad_in_memory_images_are_named_by_position():
    good = _gradient(8, 8)
    with pytest.raises(UnreadableImageError, match="item 1.*uint8"):
        CLIPEncoder(**TINY).transform([good, good.astype(np.float32)])
    with pytest.raises(UnreadableImageError, match="item 2.*shape"):
        CLIPEncoder(**TINY).transform([good, good, np.zeros((8, 8, 2), np.uint8)])


# ----------------------------------------------------------------------------- converted


def test_cmyk_jpeg_becomes_the_matching_rgb(tmp_path):
    rgb = Image.fromarray(_gradient())
    path = _save(tmp_path, "cmyk.jpg", rgb.convert("CMYK"), quality=100)
    decoded = load_rgb(str(path))
    assert decoded.mode == "RGB" and decoded.size == rgb.size
    assert np.abs(np.asarray(decoded, float) - np.asarray(rgb, float)).mean() < 4


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = _save(tmp_path, "deep.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    decoded = np.asarray(load_rgb(str(path)))
    assert decoded[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (decoded == decoded[..., :1]).all()  # grey stays grey


def test_a_16_bit_grey_colour_key_becomes_white(tmp_path):
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = _save(tmp_path, "key16.png", Image.fromarray(values), transparency=0)
    with Image.open(path) as image:
        assert image.mode == "I;16" and image.info["transparency"] == 0
    assert np.asarray(load_rgb(str(path)))[0, :, 0].tolist() == [255, 128, 255]


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_every_16_bit_grey_mode_is_scaled(mode):
    values = np.array([[0, 32768, 65535]])
    if mode == "I":  # what older Pillows make of a 16-bit PNG
        image = Image.fromarray(values.astype(np.int32))
    else:
        stored = values.astype(">u2" if mode.endswith("B") else "<u2").tobytes()
        image = Image.frombytes(mode, (3, 1), stored)
    assert image.mode == mode
    assert np.asarray(load_rgb(image))[0, :, 0].tolist() == [0, 128, 255]


def test_8_bit_data_in_a_32_bit_mode_is_kept():
    values = np.array([[0, 100, 255]], dtype=np.uint8)
    image = Image.fromarray(values).convert("I")
    assert np.asarray(load_rgb(image))[0, :, 0].tolist() == [0, 100, 255]


def test_palette_transparency_becomes_white(tmp_path):
    palette = Image.new("P", (4, 2))
    palette.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    palette.putdata([0, 0, 1, 1, 0, 1, 0, 1])
    path = _save(tmp_path, "palette.png", palette, transparency=0)
    decoded = np.asarray(load_rgb(str(path)))
    assert decoded[0, 0].tolist() == [255, 255, 255]  # index 0 is transparent
    assert decoded[0, 2].tolist() == [200, 0, 0]


def test_half_transparent_rgba_is_composited_over_white(tmp_path):
    pixels = np.zeros((2, 2, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[..., 3] = [[255, 0], [128, 64]]
    # out = alpha * colour + (1 - alpha) * white, per channel
    expected_red = [
        [200, 255],
        [200 * 128 / 255 + 255 * 127 / 255, 200 * 64 / 255 + 255 * 191 / 255],
    ]
    expected_green = [[0, 255], [255 * 127 / 255, 255 * 191 / 255]]
    for source in (str(_save(tmp_path, "alpha.png", Image.fromarray(pixels, "RGBA"))), pixels):
        decoded = np.asarray(load_rgb(source)).astype(int)
        np.testing.assert_allclose(decoded[..., 0], expected_red, atol=1)
        np.testing.assert_allclose(decoded[..., 1], expected_green, atol=1)


def test_greyscale_and_one_bit_images_become_equal_channels(tmp_path):
    grey = _save(tmp_path, "grey.png", Image.fromarray(_gradient()[..., 0]))
    one_bit = _save(tmp_path, "bw.png", Image.fromarray(_gradient()[..., 1] > 100))
    for path in (grey, one_bit):
        decoded = np.asarray(load_rgb(str(path)))
        assert decoded.shape == (24, 40, 3)
        assert (decoded == decoded[..., :1]).all()
    np.testing.assert_array_equal(np.asarray(load_rgb(str(grey)))[..., 0], _gradient()[..., 0])


def test_other_transparency_kinds_become_white():
    indices = np.array([[0, 1]], dtype=np.uint8)
    rgba_palette = Image.fromarray(indices, "P")
    rgba_palette.putpalette([9, 9, 9, 0, 200, 0, 0, 255] + [0] * 1016, "RGBA")
    colour_key = Image.fromarray(np.array([[[9, 9, 9], [200, 0, 0]]], dtype=np.uint8))
    colour_key.info["transparency"] = (9, 9, 9)
    for image in (rgba_palette, colour_key):
        assert np.asarray(load_rgb(image))[0].tolist() == [[255, 255, 255], [200, 0, 0]]
    premultiplied = Image.frombytes("La", (2, 1), bytes([0, 0, 90, 255]))
    assert np.asarray(load_rgb(premultiplied))[0].tolist() == [[255] * 3, [90] * 3]


_ROTATIONS = {6: -1, 8: 1, 3: 2}  # EXIF orientation -> quarter turns (counter-clockwise)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
@pytest.mark.parametrize("orientation", sorted(_ROTATIONS))
def test_exif_orientation_is_applied(tmp_path, orientation, suffix):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, f"o{orientation}.{suffix}", Image.fromarray(_gradient()), exif=exif)
    with Image.open(path) as image:  # the stored pixels (lossy for JPEG), not rotated
        stored = np.asarray(image.convert("RGB"))
    expected = np.rot90(stored, _ROTATIONS[orientation])
    np.testing.assert_array_equal(np.asarray(load_rgb(str(path))), expected)
    with Image.open(path) as opened:  # PIL images carrying EXIF get the same treatment
        np.testing.assert_array_equal(np.asarray(load_rgb(opened)), expected)


def test_an_exif_rotated_jpeg_embeds_like_the_upright_image(tmp_path):
    pixels = _gradient(32, 48)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = _save(tmp_path, "phone.jpg", Image.fromarray(pixels), exif=exif, quality=95)
    with Image.open(stored) as image:
        upright = np.rot90(np.asarray(image.convert("RGB")), -1).copy()
    encoder = CLIPEncoder(**TINY)
    np.testing.assert_allclose(
        encoder.transform([str(stored)]), encoder.transform([upright]), atol=1e-6
    )


def test_in_memory_images_that_look_different_never_share_a_cache_entry():
    indices = (np.arange(32 * 32).reshape(32, 32) % 3).astype(np.uint8)
    palettes = [[0, 0, 0, 255, 255, 255, 90, 90, 90], [255, 0, 0, 0, 0, 255, 0, 128, 0]]
    images = []
    for colours in palettes:  # same stored indices, different colours
        image = Image.fromarray(indices, "P")
        image.putpalette(colours + [0] * (768 - len(colours)))
        images.append(image)
    rotated = Image.fromarray(_gradient(32, 32))  # same stored pixels, turned by EXIF
    rotated.getexif()[0x0112] = 6
    images += [Image.fromarray(_gradient(32, 32)), rotated]
    uncached = CLIPEncoder(**TINY).transform(images)
    cached = CLIPEncoder(**TINY, cache="memory")
    np.testing.assert_allclose(
        np.concatenate([cached.transform([image]) for image in images]), uncached, atol=1e-6
    )
    assert not np.allclose(uncached[0], uncached[1])
    assert not np.allclose(uncached[2], uncached[3])


def test_every_converted_kind_embeds_to_finite_unit_rows(tmp_path):
    pixels = _gradient()
    paths = [
        _save(tmp_path, "a.jpg", Image.fromarray(pixels).convert("CMYK")),
        _save(tmp_path, "b.png", Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)),
        _save(tmp_path, "c.png", Image.fromarray(pixels).convert("P")),
        _save(tmp_path, "d.png", Image.fromarray(pixels).convert("LA")),
        _save(tmp_path, "e.tif", Image.fromarray(pixels[..., 0].astype(np.float32) / 255)),
    ]
    out = CLIPEncoder(**TINY).transform([str(p) for p in paths])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_float_images_outside_a_known_range_are_refused(tmp_path):
    path = _save(tmp_path, "hdr.tif", Image.fromarray(np.full((4, 4), 1e4, np.float32)))
    with pytest.raises(UnreadableImageError, match="hdr.tif.*range"):
        load_rgb(str(path))


# ----------------------------------------------------------------------------- on_error="skip"


def _mixed_inputs(tmp_path, tiny_images):
    images, _ = tiny_images
    good = [_save(tmp_path, f"good{i}.png", Image.fromarray(images[i])) for i in range(4)]
    cut = _truncated(tmp_path, "jpg")
    missing = tmp_path / "gone.png"
    items = [str(good[0]), str(cut), str(good[1]), str(missing), str(good[2]), str(good[3])]
    return items, [0, 2, 4, 5]


@pytest.mark.parametrize("cache", [None, "memory", "disk"])
def test_skip_drops_bad_files_and_returns_the_kept_positions(tmp_path, tiny_images, cache):
    items, kept_expected = _mixed_inputs(tmp_path, tiny_images)
    cache = str(tmp_path / "cache") if cache == "disk" else cache
    reference = CLIPEncoder(**TINY).transform([items[i] for i in kept_expected])
    encoder = CLIPEncoder(**TINY, on_error="skip", cache=cache)
    with pytest.warns(UnreadableImageWarning) as record:
        out, kept = encoder.transform(items, return_indices=True)
    assert len(record) == 1
    assert record[0].filename == __file__  # the warning points at the caller's line
    message = str(record[0].message)
    assert "cut.jpg" in message and "gone.png" in message and "good" not in message
    assert kept.tolist() == kept_expected
    np.testing.assert_allclose(out, reference, atol=1e-6)
    with pytest.warns(UnreadableImageWarning):  # without return_indices: the same rows
        np.testing.assert_allclose(encoder.transform(items), reference, atol=1e-6)


@pytest.mark.parametrize("cache", [None, "memory"])
def test_repeated_good_and_bad_files_are_each_counted_at_their_positions(
    tmp_path, tiny_images, cache
):
    items, _ = _mixed_inputs(tmp_path, tiny_images)
    good, cut = items[0], items[1]
    encoder = CLIPEncoder(**TINY, on_error="skip", cache=cache)
    encoder.transform([good])  # cached before: a hit must still count as kept
    repeated = [cut, good, cut, good, items[2]]
    with pytest.warns(UnreadableImageWarning, match=r"2 of 5 images \(positions \[0, 2\]\)"):
        out, kept = encoder.transform(repeated, return_indices=True)
    assert kept.tolist() == [1, 3, 4]
    reference = CLIPEncoder(**TINY).transform([good, good, items[2]])
    np.testing.assert_allclose(out, reference, atol=1e-6)


def test_skip_with_augmentation_and_in_memory_items(tiny_images):
    images, _ = tiny_images
    items = [images[0], np.zeros((5, 5, 2), np.uint8), images[1]]
    encoder = CLIPEncoder(**TINY, on_error="skip", n_augmentations=2, random_state=0)
    with pytest.warns(UnreadableImageWarning, match="item 1"):
        out, kept = encoder.fit_transform(items, return_indices=True)
    assert kept.tolist() == [0, 2]
    expected = CLIPEncoder(**TINY, n_augmentations=2, random_state=0).fit_transform(images[:2])
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_skip_keeps_the_pandas_index_of_the_kept_rows(tmp_path, tiny_images):
    pd = pytest.importorskip("pandas")
    items, kept_expected = _mixed_inputs(tmp_path, tiny_images)
    series = pd.Series(items, index=[f"row{i}" for i in range(len(items))])
    encoder = CLIPEncoder(**TINY, on_error="skip").set_output(transform="pandas")
    with pytest.warns(UnreadableImageWarning):
        frame = encoder.transform(series)
    assert list(frame.index) == [f"row{i}" for i in kept_expected]
    assert frame.shape == (4, 64) and np.isfinite(frame.to_numpy()).all()
    # A list has no index: the rows are labelled by their positions, gaps included.
    with pytest.warns(UnreadableImageWarning):
        frame, kept = encoder.fit_transform(items, return_indices=True)
    assert list(frame.index) == kept.tolist() == kept_expected


def test_nothing_readable_is_an_error_and_raise_mode_names_the_file(tmp_path, tiny_images):
    items, _ = _mixed_inputs(tmp_path, tiny_images)
    with pytest.raises(UnreadableImageError, match="None of the 2 images"):
        CLIPEncoder(**TINY, on_error="skip").transform([items[1], items[3]])
    with pytest.raises(UnreadableImageError, match="cut.jpg"):
        CLIPEncoder(**TINY).transform(items)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        CLIPEncoder(**TINY).transform([items[0], items[3]])


def test_skip_leaves_good_inputs_and_texts_alone(tiny_images):
    images, _ = tiny_images
    encoder = CLIPEncoder(**TINY, on_error="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadableImageWarning)
        out, kept = encoder.transform(images[:3], return_indices=True)
        texts = encoder.transform(["a red circle", ""])
    assert kept.tolist() == [0, 1, 2] and out.shape == (3, 64) and texts.shape == (2, 64)


def test_image_encoder_skips_the_same_way(tmp_path, tiny_images):
    pytest.importorskip("timm")
    from skvlm import ImageEncoder

    items, kept_expected = _mixed_inputs(tmp_path, tiny_images)
    encoder = ImageEncoder(model="test_vit", pretrained=None, device="cpu", on_error="skip")
    with pytest.warns(UnreadableImageWarning, match="cut.jpg"):
        out, kept = encoder.transform(items, return_indices=True)
    assert kept.tolist() == kept_expected
    reference = ImageEncoder(model="test_vit", pretrained=None, device="cpu")
    np.testing.assert_allclose(out, reference.transform([items[i] for i in kept]), atol=1e-6)


def test_a_pipeline_given_skipped_rows_fails_instead_of_misaligning(tmp_path, tiny_images):
    from sklearn.pipeline import make_pipeline

    from skvlm.classifiers import NearestPrototype

    items, _ = _mixed_inputs(tmp_path, tiny_images)
    labels = np.array(["a", "b", "a", "b", "a", "b"])
    pipe = make_pipeline(CLIPEncoder(**TINY, on_error="skip"), NearestPrototype())
    with (
        pytest.warns(UnreadableImageWarning),
        pytest.raises(ValueError, match="inconsistent numbers of samples"),
    ):
        pipe.fit(items, labels)
    # The documented pattern: encode once, index the labels with the kept positions.
    with pytest.warns(UnreadableImageWarning):
        Z, kept = CLIPEncoder(**TINY, on_error="skip").transform(items, return_indices=True)
    assert NearestPrototype().fit(Z, labels[kept]).predict(Z).shape == (4,)


def test_pil_images_read_from_damaged_files_are_named(tmp_path):
    cut = _truncated(tmp_path, "png")
    image = Image.open(cut)  # lazy: the damage shows only when decoding
    with pytest.raises(UnreadableImageError, match="cut.png"):
        CLIPEncoder(**TINY).transform([image])
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="PNG")  # incompressible: 200 bytes is a fraction
    in_memory = Image.open(io.BytesIO(buffer.getvalue()[:200]))
    with pytest.raises(UnreadableImageError, match="item 0"):
        CLIPEncoder(**TINY).transform([in_memory])
