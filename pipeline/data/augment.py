"""Training augmentation: one random draw per sample, the same geometry for the image and its mask.

Every draw comes from a generator seeded by (seed, epoch, index), so a sample's augmentation does not
depend on the number of DataLoader workers, the order of the batches or a resumed run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.params import AugmentParams

LUMA = torch.tensor([0.299, 0.587, 0.114])
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + index)


def _uniform(g: torch.Generator, amount: float) -> float:
    return (torch.rand((), generator=g).item() * 2.0 - 1.0) * amount


def _geometry(image: torch.Tensor, mask: torch.Tensor, p: AugmentParams, g: torch.Generator):
    if torch.rand((), generator=g).item() < p.hflip:
        image, mask = image.flip(-1), mask.flip(-1)
    if p.vflip and torch.rand((), generator=g).item() < p.vflip:  # drawn only when on: the other draws stay the same
        image, mask = image.flip(-2), mask.flip(-2)
    angle = math.radians(_uniform(g, p.rotate))
    zoom = 1.0 + _uniform(g, p.scale)
    tx, ty = _uniform(g, p.shift), _uniform(g, p.shift)
    if angle == 0.0 and zoom == 1.0 and tx == 0.0 and ty == 0.0:
        return image, mask
    h, w = image.shape[-2:]
    # output -> input map in pixel units about the centre, then into grid_sample's [-1, 1] coordinates
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    theta = torch.tensor([[cos, sin * h / w, -tx * 2.0], [-sin * w / h, cos, -ty * 2.0]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    warped = F.grid_sample(mask[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return image, warped[0, 0].to(mask.dtype)


def _colour(image: torch.Tensor, p: AugmentParams, g: torch.Generator) -> torch.Tensor:
    image = image * (1.0 + _uniform(g, p.brightness))
    mean = image.mean()
    image = (image - mean) * (1.0 + _uniform(g, p.contrast)) + mean
    if image.shape[0] == 3:
        gray = torch.einsum("c,chw->hw", LUMA, image)[None]
        image = gray + (image - gray) * (1.0 + _uniform(g, p.saturation))
        turn = _uniform(g, p.hue) * 2.0 * math.pi
        if turn:
            c, s = math.cos(turn), math.sin(turn)
            rotate = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
            image = torch.einsum("ij,jhw->ihw", YIQ_TO_RGB @ rotate @ RGB_TO_YIQ, image)
    return image.clamp(0.0, 1.0)


def augment(image: torch.Tensor, mask: torch.Tensor, p: AugmentParams, g: torch.Generator):
    """Augment an image (C, H, W) in [0, 1] and its index mask (H, W) with one random draw."""
    image, mask = _geometry(image, mask, p, g)
    return _colour(image, p, g), mask


def random_crop(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int], g: torch.Generator):
    """The same random (height, width) window of a (C, H, W) image and its (H, W) mask."""
    h, w = size
    top = int(torch.randint(0, image.shape[-2] - h + 1, (), generator=g))
    left = int(torch.randint(0, image.shape[-1] - w + 1, (), generator=g))
    return image[:, top : top + h, left : left + w], mask[top : top + h, left : left + w]
