"""Datasets over the competition zips: training samples and validation samples with full-size truth.

Images are decoded at the model size straight from the zips (draft-mode JPEG decoding), normalised as the model's
input contract says (pipeline.data.preprocess), and masks are resized with nearest neighbour. Validation samples
also carry the full-resolution mask, because the metric is computed at the original size.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.competitions import Competition
from pipeline.data import augment as aug
from pipeline.data.preprocess import Preprocess
from pipeline.images import Size, decode_image, resize_mask
from pipeline.params import AugmentParams


class TrainDataset(Dataset):
    """(image (C, H, W), mask (H, W) uint8: 0/1, class indices or bit masks) at the model size, augmented when
    `augment` is given, cut to a random window of `crop` (height, width) when given. `extra` adds the images of
    another source that reads like a competition (names, read_image, read_mask): pseudo-labelled test images."""

    def __init__(
        self,
        comp: Competition,
        names: list[str],
        pre: Preprocess,
        augment: AugmentParams | None = None,
        seed: int = 0,
        crop: Size | None = None,
        extra=None,
    ):
        self.comp, self.names, self.pre, self.extra = comp, list(names), pre, extra
        self.augment, self.seed, self.epoch, self.crop = augment, seed, 0, crop

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.names) + (len(self.extra.names) if self.extra is not None else 0)

    def _load(self, index: int, full_mask: bool) -> tuple[torch.Tensor, np.ndarray]:
        """(image (C, H, W) in [0, 1] at the model size, mask at the model size or the original size)."""
        own = index < len(self.names)
        source, name = (
            (self.comp, self.names[index]) if own else (self.extra, self.extra.names[index - len(self.names)])
        )
        array, original = decode_image(source.read_image(name), name, self.pre.channels, self.pre.size)
        mask = source.read_mask(name, expected=original)
        return torch.from_numpy(array).permute(2, 0, 1).contiguous(), mask if full_mask else resize_mask(
            mask, self.pre.size
        )

    def __getitem__(self, index: int):
        image, mask = self._load(index, full_mask=False)
        mask_t = torch.from_numpy(np.ascontiguousarray(mask))
        draws = aug.sample_generator(self.seed, self.epoch, index)
        if self.augment is not None:
            image, mask_t = aug.augment(image, mask_t, self.augment, draws)
        if self.crop is not None:
            image, mask_t = aug.random_crop(image, mask_t, self.crop, draws)
        return self.pre.normalize(image), mask_t


class ValidationDataset(TrainDataset):
    """(image, mask at the model size, full-size mask, index): the metric needs the full size."""

    def __getitem__(self, index: int):
        image, full = self._load(index, full_mask=True)
        small = resize_mask(full, self.pre.size)
        return self.pre.normalize(image), torch.from_numpy(small), torch.from_numpy(full), index


def collate_validation(batch):
    """Stack the model-size tensors; the full-size masks stay a list (images of a dataset may differ in size)."""
    images, small, full, index = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(small), list(full), torch.tensor(index)
