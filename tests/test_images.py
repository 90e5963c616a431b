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


def test_sixteen_bit_grayscale_is_scaled_to_unit_range():
    data = _png((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    assert images.channels_of(data, "a.png") == 1
    array, _ = images.decode_image(data, "a.png", 1, (32, 32))
    assert array.shape == (32, 32, 1) and 0.9 < array.max() <= 1.0


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
