"""UNet++ (Zhou et al. 2018): nested, densely connected skips; optional deep supervision.

Node X[i][j] (level i, column j) sees every earlier node of its level and the up-sampled node below.
With deep supervision a head sits on every X[0][j]; training averages their losses, and inference
averages their logits. Any input size works (padded to a multiple of 2**depth, then cropped).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.unet import DoubleConv, pad_to_multiple


class UNetPlusPlus(nn.Module):
    """Returns logits (N, classes, H, W); a list of them, one per head, when training with deep supervision."""

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 1,
        base_channels: int = 32,
        depth: int = 4,
        deep_supervision: bool = False,
    ):
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.depth, self.multiple, self.deep_supervision = depth, 2**depth, deep_supervision
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.nodes = nn.ModuleDict()
        for i in range(depth + 1):
            self.nodes[f"{i}_0"] = DoubleConv(in_channels if i == 0 else widths[i - 1], widths[i])
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                self.nodes[f"{i}_{j}"] = DoubleConv(widths[i] * j + widths[i + 1], widths[i])
        n_heads = depth if deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(widths[0], classes, kernel_size=1) for _ in range(n_heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x, (h, w) = pad_to_multiple(x, self.multiple)
        grid: dict[tuple[int, int], torch.Tensor] = {(0, 0): self.nodes["0_0"](x)}
        for i in range(1, self.depth + 1):
            grid[i, 0] = self.nodes[f"{i}_0"](self.pool(grid[i - 1, 0]))
        for j in range(1, self.depth + 1):
            for i in range(self.depth + 1 - j):
                inputs = [grid[i, k] for k in range(j)] + [self.up(grid[i + 1, j - 1])]
                grid[i, j] = self.nodes[f"{i}_{j}"](torch.cat(inputs, dim=1))
        if not self.deep_supervision:
            return self.heads[0](grid[0, self.depth])[..., :h, :w]
        outs = [head(grid[0, j + 1])[..., :h, :w] for j, head in enumerate(self.heads)]
        return outs if self.training else torch.stack(outs).mean(dim=0)
