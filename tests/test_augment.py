"""Augmentation: the same geometry for image and mask, reproducible per (seed, epoch, index)."""

from __future__ import annotations

import pytest
import torch

from pipeline import params
from pipeline.data import augment
from pipeline.params import AugmentParams

STRONG = AugmentParams(
    hflip=0.5,
    vflip=0.0,
    shift=0.1,
    scale=0.2,
    rotate=20.0,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    hue=0.0,
)


def _pair():
    mask = torch.zeros(48, 64, dtype=torch.uint8)
    mask[10:30, 8:40] = 1
    mask[30:40, 45:60] = 1
    image = mask.float().expand(3, -1, -1).clone()  # the image is the mask: geometry must agree
    return image, mask


def test_image_and_mask_move_together():
    image, mask = _pair()
    for index in range(20):
        out_image, out_mask = augment.augment(image, mask, STRONG, augment.sample_generator(1, 0, index))
        agree = ((out_image[0] > 0.5) == (out_mask > 0)).float().mean()
        assert agree > 0.98, (index, agree)


def test_same_seed_epoch_index_same_result_and_epochs_differ():
    image, mask = _pair()
    p = params.replace(STRONG, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05)
    a = augment.augment(image, mask, p, augment.sample_generator(3, 2, 5))
    b = augment.augment(image, mask, p, augment.sample_generator(3, 2, 5))
    c = augment.augment(image, mask, p, augment.sample_generator(3, 3, 5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_colour_changes_keep_the_range_and_the_mask():
    image = torch.rand(3, 16, 16)
    mask = torch.ones(16, 16, dtype=torch.uint8)
    p = AugmentParams(
        hflip=0.0,
        vflip=0.0,
        shift=0.0,
        scale=0.0,
        rotate=0.0,
        brightness=0.5,
        contrast=0.5,
        saturation=0.5,
        hue=0.2,
    )
    out, out_mask = augment.augment(image, mask, p, augment.sample_generator(0, 0, 0))
    assert out.min() >= 0 and out.max() <= 1 and torch.equal(out_mask, mask)


def test_random_crops_cut_the_same_window_from_image_and_mask():
    mask = torch.arange(40 * 60).reshape(40, 60) % 251
    image = torch.stack([mask.float(), -mask.float(), mask.float() * 2])
    seen = set()
    for index in range(8):
        crop_image, crop_mask = augment.random_crop(image, mask, (16, 24), augment.sample_generator(0, 0, index))
        assert crop_image.shape == (3, 16, 24) and crop_mask.shape == (16, 24)
        assert torch.equal(crop_image[0], crop_mask.float()) and torch.equal(crop_image[1], -crop_mask.float())
        seen.add(int(crop_mask[0, 0]))
    assert len(seen) > 1  # windows move
    whole, whole_mask = augment.random_crop(image, mask, (40, 60), augment.sample_generator(0, 0, 0))
    assert torch.equal(whole, image) and torch.equal(whole_mask, mask)


def test_a_crop_larger_than_the_scaled_images_is_refused_naming_the_key(tiny_demo, tmp_path):
    import pandas as pd

    from pipeline import training
    from pipeline.data import split
    from tests.conftest import open_carvana, tiny_train_params

    p = tiny_train_params(crop=[64, 96])  # the images are 48x80 at scale 0.5
    comp = open_carvana(tiny_demo)
    masks = pd.read_csv(tiny_demo / "train_masks.csv", dtype=str, keep_default_na=False)
    names = masks["img"].tolist()
    table = split.make_folds(names, [0.0] * len(names), [n[:12] for n in names], folds=3, seed=0, stratify=False,
                             label="car")  # fmt: skip
    with pytest.raises(training.TrainingError, match=r"train.crop \[64, 96\] is larger than the images at train.scale"):
        training.train_fold(p, training.setup(p), comp, table, 0, tmp_path)
