"""Datasets in other layouts, imported as the files of the competition `download.competition` names (Carvana's
layout for a slug this package does not know, Severstal's zip and CSV files for its slug).

`download.local.layout` picks the reader:

- `folder-pairs`: `<path>/<images>/<name>.<ext>` with `<path>/<masks>/<stem><mask_suffix>.<ext>`
  (the Pytorch-UNet seed's `imgs/` + `masks/`, ISBI's per-slice PNGs);
- `mindspore`: `<path>/<id>/image.png` + `<path>/<id>/mask.png` (also under `train/` and `val/`);
- `tiff-stack`: multi-page TIFFs, `<path>/<images>` and `<path>/<masks>` (ISBI's train-volume.tif and
  train-labels.tif), one page per slice.

Images keep their bytes where they already are PNG or JPEG (no recompression); TIFF pages become
PNGs (16-bit preserved). Masks become class indices: `mask_values: binary` maps 0/255 (or 0/1) to 0/1, `index`
keeps class ids, `colors` maps RGB colours through the `colors` table; the competition writes them its way
(Carvana: class-index PNGs and a classes.json for multi-class data; Severstal: class k as ClassId k). Names are
checked for pairs before anything is written, and each mask against its image's size as it is read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageSequence
from tqdm import tqdm

from pipeline.competitions import Competition
from pipeline.errors import UserError
from pipeline.images import past_16_bits, turned
from pipeline.params import LocalParams

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
KEEP_FORMATS = ("PNG", "JPEG")


class LayoutError(UserError):
    """The folder does not match the layout the params describe."""


@dataclass
class Item:
    """One image (and its mask, for training data), readable on demand."""

    name: str  # file name in the competition folder, e.g. "12.png"
    image: Callable[[], tuple[bytes, Image.Image]]
    mask: Callable[[], Image.Image] | None
    source: str  # where the image came from, for messages
    mask_source: str = ""


def _file(path: Path) -> Callable[[], tuple[bytes, Image.Image]]:
    def read():
        data = path.read_bytes()
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Image.DecompressionBombError as err:
            raise LayoutError(f"{path} is too large to decode safely ({err}); cut it into tiles") from None
        except (OSError, SyntaxError) as err:
            raise LayoutError(f"{path} is not a readable image ({err})") from None
        return data, img

    return read


def _open_mask(path: Path) -> Callable[[], Image.Image]:
    return lambda: _file(path)()[1]


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise LayoutError(f"{folder} is not a folder; check download.local.path and the layout's folder names")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=lambda p: (_natural(p), p.name))
    if not files:
        raise LayoutError(f"{folder} holds no images ({', '.join(IMAGE_EXTS)})")
    return files


def _natural(path: Path):
    stem = path.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _by_stem(files: list[Path], why: str) -> dict[str, Path]:
    """{stem: file}, refusing two files of one stem (1.png and 1.jpg): `why` says what would go wrong."""
    found: dict[str, Path] = {}
    for path in files:
        if path.stem in found:
            raise LayoutError(f"{found[path.stem]} and {path.name} share the name {path.stem!r}: {why}; keep one")
        found[path.stem] = path
    return found


def folder_pairs(p: LocalParams) -> tuple[list[Item], list[Item]]:
    """Each image with the mask of its stem and mask_suffix; two files of one stem, or a mask without its image
    (an image renamed or lost), stop the import rather than pair a mask with the wrong image or none."""
    root = Path(p.path)
    masks = _by_stem(_images_in(root / p.masks), "which one is the label is a guess")
    images = _by_stem(_images_in(root / p.images), "both would take the same mask")
    train = []
    for image in images.values():
        mask = masks.pop(image.stem + p.mask_suffix, None)
        if mask is None:
            raise LayoutError(
                f"{image} has no mask {image.stem}{p.mask_suffix}.* in {root / p.masks}; "
                f"check download.local.mask_suffix"
            )
        train.append(Item(_png_name(image), _file(image), _open_mask(mask), str(image), str(mask)))
    if masks:
        first = next(iter(masks.values()))
        raise LayoutError(
            f"{root / p.masks}: {len(masks)} mask(s) have no image in {root / p.images}, e.g. {first.name}: "
            f"restore the image (or its name), or remove the mask"
        )
    test = (
        [Item(_png_name(t), _file(t), None, str(t)) for t in _images_in(root / p.test_images)] if p.test_images else []
    )
    return train, test


def mindspore(p: LocalParams) -> tuple[list[Item], list[Item]]:
    root = Path(p.path)
    folders = [root / "train", root / "val"] if (root / "train").is_dir() else [root]
    train = []
    for folder in folders:
        for sample in sorted((d for d in folder.iterdir() if d.is_dir()), key=_natural):
            image, mask = sample / "image.png", sample / "mask.png"
            if not image.is_file() or not mask.is_file():
                raise LayoutError(f"{sample} needs image.png and mask.png (the MindSpore multi-class layout)")
            train.append(Item(f"{sample.name}.png", _file(image), _open_mask(mask), str(image), str(mask)))
    if not train:
        raise LayoutError(f"{root} holds no <id>/image.png + <id>/mask.png folders")
    test = (
        [Item(_png_name(t), _file(t), None, str(t)) for t in _images_in(root / p.test_images)] if p.test_images else []
    )
    return train, test


def _pages(path: Path) -> list[Image.Image]:
    if not path.is_file():
        raise LayoutError(f"{path} does not exist; set download.local.images/masks to the TIFF stacks")
    try:
        with Image.open(path) as stack:
            return [page.copy() for page in ImageSequence.Iterator(stack)]
    except Image.DecompressionBombError as err:
        raise LayoutError(f"{path} is too large to decode safely ({err}); cut its pages into tiles") from None
    except (OSError, SyntaxError) as err:
        raise LayoutError(f"{path} is not a readable image stack ({err})") from None


def tiff_stack(p: LocalParams) -> tuple[list[Item], list[Item]]:
    root = Path(p.path)
    images, masks = _pages(root / p.images), _pages(root / p.masks)
    if len(images) != len(masks):
        raise LayoutError(
            f"{root / p.images} has {len(images)} pages but {root / p.masks} has {len(masks)}; "
            f"every slice needs its label page"
        )
    stem = Path(p.images).stem

    def page(img):
        return lambda: (b"", img)

    train = [
        Item(
            f"{stem}_{i:03d}.png",
            page(img),
            (lambda m=m: m),
            f"{root / p.images} page {i}",
            f"{root / p.masks} page {i}",
        )
        for i, (img, m) in enumerate(zip(images, masks, strict=True))
    ]
    test = []
    if p.test_images:
        tstem = Path(p.test_images).stem
        test = [
            Item(f"{tstem}_{i:03d}.png", page(img), None, f"{root / p.test_images} page {i}")
            for i, img in enumerate(_pages(root / p.test_images))
        ]
    return train, test


READERS = {"folder-pairs": folder_pairs, "mindspore": mindspore, "tiff-stack": tiff_stack}


def _png_name(path: Path) -> str:
    return path.name if path.suffix.lower() in (".png", ".jpg", ".jpeg") else f"{path.stem}.png"


def _image_bytes(item: Item) -> tuple[bytes, tuple[int, int]]:
    data, img = item.image()
    if item.mask is not None and (why := turned(img, item.source)):
        raise LayoutError(why)
    if data and img.format in KEEP_FORMATS:
        return data, (img.height, img.width)
    buf = io.BytesIO()
    _storable(img, item.source).save(buf, format="PNG")
    return buf.getvalue(), (img.height, img.width)


def _storable(img: Image.Image, source: str) -> Image.Image:
    """The image as a PNG holds it without changing a value: 8-bit grey and colour as they are, other colour modes
    as RGB, integer grey of up to 16 bits as 16-bit (a big-endian TIFF's too: Pillow's own conversions clip those at
    255); float images and integers past 16 bits are refused rather than clipped."""
    if img.mode in ("L", "RGB", "I;16"):
        return img
    if why := past_16_bits(img, source):
        raise LayoutError(why)
    if img.mode.startswith("I"):  # I;16B, I;16L, I;16N, I (32-bit)
        return Image.fromarray(np.asarray(img).astype(np.uint16))
    return img.convert("RGB")


def to_index(mask: Image.Image, p: LocalParams, source: str) -> np.ndarray:
    """A mask image -> uint8 class indices, following download.local.mask_values."""
    if mask.format == "JPEG":
        return _lossy_binary(mask, p, source)
    if p.mask_values == "colors":
        rgb = np.asarray(mask.convert("RGB"))
        table = {tuple(v): k for k, v in p.colors.items()}
        table.setdefault((0, 0, 0), 0)
        codes = rgb[..., 0].astype(np.int64) << 16 | rgb[..., 1].astype(np.int64) << 8 | rgb[..., 2]
        out = np.zeros(codes.shape, np.uint8)
        for code in np.unique(codes):
            colour = (int(code >> 16) & 255, int(code >> 8) & 255, int(code) & 255)
            if colour not in table:
                raise LayoutError(
                    f"{source}: colour {list(colour)} is not in download.local.colors; add it (class id: [r, g, b])"
                )
            out[codes == code] = table[colour]
        return out
    if mask.mode in ("RGB", "RGBA"):
        raise LayoutError(f"{source} is an RGB mask; set download.local.mask_values to colors and map its colours")
    values = np.asarray(mask)
    if p.mask_values == "binary":
        present = set(np.unique(values).tolist())
        if not (present <= {0, 1} or present <= {0, 255}):
            raise LayoutError(
                f"{source} holds values {sorted(present)[:6]}: not a 0/1 or 0/255 mask; "
                f"use download.local.mask_values: index for class ids"
            )
        return (values > 0).astype(np.uint8)
    if values.max() > 255:
        raise LayoutError(f"{source} holds class {int(values.max())}; at most 256 classes are supported")
    return values.astype(np.uint8)


def _lossy_binary(mask: Image.Image, p: LocalParams, source: str) -> np.ndarray:
    """A JPEG mask (Kvasir-SEG's, many Kaggle datasets'): its compression moves values near every edge, so a 0/255
    mask is read by a cut at 128, as its makers mean it. Class ids, colours and 0/1 masks drown in that noise: they
    are refused rather than guessed."""
    if p.mask_values != "binary":
        raise LayoutError(
            f"{source} is a JPEG, whose compression changes pixel values near every edge, so its "
            f"{'colours' if p.mask_values == 'colors' else 'class ids'} cannot be read exactly; save the masks as PNG"
        )
    rgb = np.asarray(mask.convert("RGB"), dtype=np.int16)
    if (rgb.max(axis=2) - rgb.min(axis=2)).max() > 64:
        raise LayoutError(f"{source} is a colour JPEG mask; save the masks as PNG and map their colours (colors)")
    grey = rgb.mean(axis=2)
    if 0 < grey.max() < 128:
        raise LayoutError(
            f"{source} is a JPEG mask of values up to {grey.max():.0f}: a 0/1 mask cannot be read through JPEG's "
            f"compression noise; save the masks as PNG"
        )
    return (grey >= 128).astype(np.uint8)


def import_folder(p: LocalParams, out: Path, comp: type[Competition]) -> None:
    """Read the folder with its layout's reader and write it as the files of the competition `comp` into `out`."""
    train, test = READERS[p.layout](p)
    for items in (train, test):
        names = [i.name for i in items]
        if len(set(names)) != len(names):
            raise LayoutError(f"{p.path}: two images would share a name in the competition folder")
    comp.write(out, _train(train, p), _test(test), p.mask_values == "binary", max(p.colors, default=0) + 1)


def _train(items: list[Item], p: LocalParams):
    """(name, image bytes, class indices) of every train item, its mask checked against its image; index masks
    whose ids are mostly unused (VOC's 255 'void' border) stop before a model of that many classes is made."""
    present, top_of, lossy = np.zeros(256, bool), {}, 0
    for item in tqdm(items, desc="import train", unit="img"):
        data, size = _image_bytes(item)
        mask = item.mask()
        lossy += mask.format == "JPEG"
        index = to_index(mask, p, item.mask_source)
        if index.shape != size:
            raise LayoutError(
                f"{item.source}: its mask is {index.shape[1]}x{index.shape[0]} but the image is {size[1]}x{size[0]}"
            )
        present |= np.bincount(index.ravel(), minlength=256).astype(bool)
        top_of.setdefault(int(index.max()), item.mask_source)
        yield item.name, data, index
    if lossy:
        print(f"{lossy} of the {len(items)} masks are JPEGs (lossy): each read as 0/255 with a cut at 128")
    if p.mask_values == "index":
        _check_ids(present, top_of)


def _check_ids(present: np.ndarray, top_of: dict[int, str]) -> None:
    """Refuse class ids of which most below the largest never appear: each id is an output channel, so masks of
    0, 1 and 255 would train 256 classes, 253 of them empty."""
    if not present.any():
        return
    top = int(np.flatnonzero(present).max())
    unused = [k for k in range(1, top) if not present[k]]
    if top > 2 and len(unused) * 2 > top:
        used = ", ".join(str(k) for k in np.flatnonzero(present))
        raise LayoutError(
            f"{top_of[top]}: the masks hold class ids {used}, so {top + 1} classes of which {len(unused)} never "
            f"appear. If {top} marks pixels to ignore (VOC's 255 'void'), set them to 0 or to their class in the "
            f"masks; if the ids should be consecutive (1, 2, ...), renumber them"
        )


def _test(items: list[Item]):
    for item in tqdm(items, desc="import test", unit="img"):
        yield item.name, _image_bytes(item)[0]
