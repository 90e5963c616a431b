"""Decoding: draft-mode JPEGs at the model size, masks checked, bad files named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline import images


def _jpeg(w=320, h=200) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png(array, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, "PNG")
    return buf.getvalue()


def test_jpeg_is_decoded_at_the_requested_size_with_its_original_size():
    array, original = images.decode_image(_jpeg(), "a.jpg", 3, (25, 40))
    assert array.shape == (25, 40, 3) and array.dtype == np.float32 and original == (200, 320)
    assert 0.0 <= array.min() and array.max() <= 1.0


def test_dct_scale_is_the_largest_that_still_covers_the_target():
    assert images.dct_scale((1280, 1918), (160, 240)) == 8  # Pillow alone picks 1/4 here (1918 // 240 = 7)
    assert images.dct_scale((1280, 1918), (320, 480)) == 4
    assert images.dct_scale((1280, 1918), (161, 240)) == 4
    assert images.dct_scale((200, 320), (200, 320)) == 1
    assert images.dct_scale((5, 7), (1, 1)) == 8


def test_carvana_size_decodes_at_one_eighth_without_a_resize_and_matches_a_full_decode():
    rng = np.random.default_rng(1)
    smooth = np.asarray(
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).resize((1918, 1280), Image.BILINEAR)
    )
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, "JPEG", quality=95)
    img, original = images._open(buf.getvalue(), "car.jpg", (160, 240))
    assert original == (1280, 1918) and img.size == (240, 160)  # straight from the DCT, nothing to resize
    ours, _ = images.decode_pixels(buf.getvalue(), "car.jpg", 3, (160, 240))
    full = Image.open(io.BytesIO(buf.getvalue()))
    reference = np.asarray(full.resize((240, 160), Image.BOX)).astype(int)
    quarter = Image.open(io.BytesIO(buf.getvalue()))
    quarter.draft("RGB", (240, 160))  # Pillow's own choice: 1/4, then a bilinear resize
    quarter = np.asarray(quarter.resize((240, 160), Image.BILINEAR)).astype(int)
    error = np.abs(ours.astype(int) - reference).mean()
    assert error < 3.0 and error <= np.abs(quarter - reference).mean() + 0.1  # as close to the full decode


def test_sixteen_bit_grayscale_is_scaled_to_unit_range():
    data = _png((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    assert images.channels_of(data, "a.png") == 1
    array, _ = images.decode_image(data, "a.png", 1, (32, 32))
    assert array.shape == (32, 32, 1) and 0.9 < array.max() <= 1.0


def test_a_dark_sixteen_bit_image_stays_dark_and_a_float_one_is_refused():
    dark = np.full((64, 64), 200, np.uint16)  # beside bright slices, scaled by the format's range, not its own maximum
    for size in (None, (32, 32)):
        array, _ = images.decode_image(_png(dark), "dark.png", 1, size)
        assert np.allclose(array, 200 / 65535)
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(buf, "TIFF")
    with pytest.raises(images.ImageError, match=r"float.tif is a floating-point image.*8- or 16-bit"):
        images.decode_image(buf.getvalue(), "float.tif", 1)


def test_corrupt_and_truncated_images_name_the_file():
    data = _jpeg()
    with pytest.raises(images.ImageError, match="broken.jpg.*corrupt or truncated"):
        images.decode_image(data[: len(data) // 2], "broken.jpg", 3, (25, 40))
    with pytest.raises(images.ImageError, match="junk.jpg"):
        images.decode_image(b"not an image", "junk.jpg", 3)


def test_wrong_channel_count_is_refused():
    with pytest.raises(images.ImageError, match="gray.png has 1 channel.*takes 3"):
        images.decode_image(_png(np.zeros((8, 8), np.uint8)), "gray.png", 3)


def test_mask_checks():
    ok = np.zeros((20, 30), np.uint8)
    ok[5:10, 5:20] = 1
    assert images.decode_mask(_png(ok), "m.png", 1, expected=(20, 30), size=(10, 15)).shape == (10, 15)
    with pytest.raises(images.ImageError, match="m.png is 30x20 but its image is 31x20"):
        images.decode_mask(_png(ok), "m.png", 1, expected=(20, 31))
    with pytest.raises(images.ImageError, match="holds 0/255.*mask_values: binary"):
        images.decode_mask(_png(ok * 255), "m.png", 1)
    with pytest.raises(images.ImageError, match="colour \\(RGB\\) mask"):
        images.decode_mask(_png(np.zeros((4, 4, 3), np.uint8)), "m.png", 1)
    with pytest.raises(images.ImageError, match="holds class 7 but the data has 4 classes"):
        images.decode_mask(_png(ok * 7), "m.png", 4)


def test_nearest_resize_never_invents_classes():
    mask = np.random.default_rng(0).integers(0, 4, (40, 60)).astype(np.uint8)
    small = images.resize_mask(mask, (13, 17))
    assert set(np.unique(small)) <= {0, 1, 2, 3}
