"""U-Net (Ronneberger et al. 2015) as in the seeds: two conv3x3-BN-ReLU per level, max-pool down,
bilinear or transposed-conv up, skip concatenation.

With `base_channels=64, depth=4` it is the seed's network, parameter for parameter (31.0M with
transposed convolutions, 17.3M bilinear). Any input size works: the input is padded to a multiple of
2**depth (1918 -> 1920) and the logits are cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        mid = mid_channels or out_channels
        super().__init__(
            nn.Conv2d(in_channels, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Up-sample the deeper features, concatenate the skip, then DoubleConv."""

    def __init__(self, below: int, skip: int, out_channels: int, bilinear: bool):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(below + skip, out_channels, (below + skip) // 2)
        else:
            self.up = nn.ConvTranspose2d(below, below // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(below // 2 + skip, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad (N, C, H, W) on the bottom/right to a multiple; returns the original (H, W).

    Always pads (by zero where nothing is needed) instead of branching on the size, so that an exported
    ONNX graph keeps height and width dynamic.
    """
    h, w = x.shape[-2:]
    return F.pad(
        x, (0, (multiple - w % multiple) % multiple, 0, (multiple - h % multiple) % multiple), mode="replicate"
    ), (h, w)


class UNet(nn.Module):
    """U-Net returning logits (N, classes, H, W) for inputs (N, in_channels, H, W) of any size."""

    def __init__(
        self, in_channels: int = 3, classes: int = 1, base_channels: int = 64, depth: int = 4, bilinear: bool = True
    ):
        super().__init__()
        factor = 2 if bilinear else 1
        widths = [base_channels * 2**i for i in range(depth)]
        self.multiple = 2**depth
        self.inc = DoubleConv(in_channels, widths[0])
        self.down = nn.ModuleList(
            [nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i - 1], widths[i])) for i in range(1, depth)]
            + [nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[-1], base_channels * 2**depth // factor))]
        )
        self.up = nn.ModuleList()
        below = base_channels * 2**depth // factor
        for i in reversed(range(depth)):
            out = widths[i] // factor if i > 0 else widths[0]
            self.up.append(Up(below, widths[i], out, bilinear))
            below = out
        self.head = nn.Conv2d(widths[0], classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.multiple)
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)[..., :h, :w]
