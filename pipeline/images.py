"""Decoding images and masks, fast and with errors that name the file.

JPEGs are decoded with Pillow's draft mode when the target is smaller: the largest DCT-domain
down-scaling (1/2, 1/4, 1/8) that still covers the model size skips most of the work, then a resize
reaches the exact size (none is needed for Carvana at scale 1/8). Masks are class indices (0/1 for
Carvana's GIFs) or bit masks of classes that may overlap (Severstal), resized with nearest neighbour, so no new
values appear.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pipeline.errors import UserError

Size = tuple[int, int]  # (height, width)
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}  # the statistics ImageNet encoders expect


class ImageError(UserError):
    """An image or mask that cannot be used; the message names the file and the fix."""


def dct_scale(original: Size, target: Size) -> int:
    """The largest JPEG DCT scaling (1/8, 1/4, 1/2, 1) whose output, ceil(size / scale), still covers `target`.

    Pillow's own choice from the target size, `min(width // target_w, ...)`, is one step too cautious
    whenever the size is not a multiple of 8: 1918 // 240 = 7 gives 1/4 and a resize, where 1/8 gives
    240 columns directly at half the cost.
    """
    fits = (s for s in (8, 4, 2, 1) if -(-original[0] // s) >= target[0] and -(-original[1] // s) >= target[1])
    return next(fits, 1)  # 1 also when the target is larger than the image (an up-sampling resize follows)


def _open(data: bytes, name: str, draft_to: Size | None = None, mode: str = "RGB") -> tuple[Image.Image, Size]:
    """The decoded image and its original (height, width)."""
    try:
        img = Image.open(io.BytesIO(data))
        original = (img.height, img.width)
        if draft_to is not None and img.format == "JPEG":
            scale = dct_scale(original, draft_to)  # asking for size // scale makes Pillow pick exactly `scale`
            img.draft(mode, (max(1, img.width // scale), max(1, img.height // scale)))
        img.load()
        return img, original
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(
            f"{name} is not a readable image ({err}); the file is corrupt or truncated: "
            f"replace it (for Kaggle's data, delete the zip and run `dvc repro download`)"
        ) from None


def image_size(data: bytes, name: str, upright: bool = False) -> Size:
    """(height, width) read from the header only, or ImageError naming a file that is not an image; with `upright`
    (a labelled image), also one that an EXIF orientation turns."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if upright and (why := turned(img, name)):
                raise ImageError(why)
            return img.height, img.width
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name} is not a readable image (Pillow knows no such format); give an image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{name} is not a readable image ({err}); give an image file (JPEG, PNG, ...)") from None


ORIENTATION = 0x0112  # the EXIF tag of a photo's rotation or mirroring, which viewers and annotation tools apply


def turned(img: Image.Image, name: str) -> str | None:
    """Why a labelled image with an EXIF orientation cannot be trusted (None without one): its pixels are stored
    otherwise than shown, so whether its mask was drawn on the one or the other is a guess, and a half turn keeps
    the size, where no later check could see it."""
    value = img.getexif().get(ORIENTATION, 1)
    if value == 1:
        return None
    return (
        f"{name} carries EXIF orientation {value}: it is shown turned or mirrored, but its pixels are stored "
        f"otherwise, so whether its mask was drawn on the one or the other is a guess. Check the mask against the "
        f"image as shown, then store the image that way (e.g. `mogrify -auto-orient`, or Pillow's "
        f"ImageOps.exif_transpose) and import again"
    )


GRAY_MODES = ("L", "I", "I;16", "I;16B", "I;16L", "F", "1")


def past_16_bits(img: Image.Image, name: str) -> str | None:
    """Why a grey image cannot be read as 16 bits (None when it can): a float image has no range to scale by, and
    integers past 16 bits would be clipped."""
    if img.mode == "F":
        return (
            f"{name} is a floating-point image, whose intensities have no fixed range; save it as 8- or 16-bit "
            f"integers (e.g. scaled to 0..65535)"
        )
    if img.mode == "I":  # 32-bit integers (I;16 modes cannot pass 16 bits)
        values = np.asarray(img)
        if values.min() < 0 or values.max() > 65535:
            return f"{name} holds values from {values.min()} to {values.max()}, past 16 bits; rescale it to 0..65535"
    return None


def channels_of(data: bytes, name: str) -> int:
    """1 for grayscale (8- or 16-bit) images, 3 for colour ones."""
    img, _ = _open(data, name)
    return 1 if img.mode in GRAY_MODES else 3


def pixels(img: Image.Image, channels: int, name: str) -> np.ndarray:
    """(H, W, C) uint8 for 8-bit images; float32 in [0, 1] for 16-bit grayscale, over the format's range and never
    the image's own maximum (a dark 16-bit image stays dark beside bright ones). A float image has no range to
    scale by, so it is refused rather than guessed (decode_pixels, before any resize)."""
    have = 1 if img.mode in GRAY_MODES else 3
    if have != channels:
        raise ImageError(
            f"{name} has {have} channel(s) ({img.mode}) but the model takes {channels}; "
            f"convert the image or train a model on such images"
        )
    if channels == 3:
        return np.array(img.convert("RGB"))  # a writable copy, for torch.from_numpy
    if img.mode in ("L", "1"):
        return np.array(img.convert("L"))[..., None]
    return np.asarray(img, dtype=np.float32)[..., None] / 65535.0


def unit(arr: np.ndarray) -> np.ndarray:
    """`pixels` as float32 in [0, 1]."""
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr


def decode_pixels(data: bytes, name: str, channels: int, size: Size | None = None) -> tuple[np.ndarray, Size]:
    """Decode to `pixels` at `size` (or the original size); also returns the original size."""
    img, original = _open(data, name, size, "RGB" if channels == 3 else "L")
    if why := past_16_bits(img, name):  # the file's own mode: a 16-bit image resized as "I" is not checked again
        raise ImageError(why)
    if size is not None and (img.height, img.width) != size:
        if img.mode.startswith("I;16"):
            img = img.convert("I")
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return pixels(img, channels, name), original


def decode_image(data: bytes, name: str, channels: int, size: Size | None = None) -> tuple[np.ndarray, Size]:
    """Decode to float32 (H, W, C) in [0, 1] at `size` (or the original size); also the original size."""
    arr, original = decode_pixels(data, name, channels, size)
    return unit(arr), original


def decode_mask(
    data: bytes, name: str, classes: int, expected: Size | None = None, size: Size | None = None
) -> np.ndarray:
    """Decode a class-index mask to uint8 (H, W), checked against the image size and class count.

    `classes` is the model's output count: 1 for a binary (sigmoid) mask with values 0/1, N >= 2 for
    index masks with values 0..N-1.
    """
    img, _ = _open(data, name)
    if img.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        raise ImageError(
            f"{name} is a colour ({img.mode}) mask; masks must hold class indices (0/1 for Carvana). "
            f"Import colour-coded masks with download.local.mask_values: colors"
        )
    if expected is not None and (img.height, img.width) != expected:
        raise ImageError(
            f"{name} is {img.width}x{img.height} but its image is {expected[1]}x{expected[0]}; "
            f"a mask must have its image's size"
        )
    arr = np.array(img.convert("L") if img.mode == "1" else img)  # a writable copy
    if arr.dtype != np.uint8:
        arr = arr.astype(np.int64)
    top = int(arr.max()) if arr.size else 0
    limit = max(classes, 2)
    if top >= limit:
        values = np.unique(arr)
        if classes == 1 and set(values.tolist()) <= {0, 255}:
            raise ImageError(
                f"{name} holds 0/255; the pipeline's binary masks are 0/1 (Carvana's GIFs). "
                f"Import such masks with download.local.mask_values: binary, which maps 255 to 1"
            )
        raise ImageError(
            f"{name} holds class {top} but the data has {limit} classes (0..{limit - 1}); "
            f"check the mask or the class list"
        )
    arr = arr.astype(np.uint8, copy=False)
    return arr if size is None else resize_mask(arr, size)


def resize_mask(mask: np.ndarray, size: Size) -> np.ndarray:
    """Nearest-neighbour resize of a uint8 index mask to (height, width)."""
    if mask.shape == size:
        return np.ascontiguousarray(mask)
    return np.array(Image.fromarray(mask).resize((size[1], size[0]), Image.NEAREST))
