"""Selective-kernel convolution and the ResNet-D pieces of SimCLRv2's released SK ResNets.

SimCLRv2's biggest network, ResNet-152 (3x+SK), puts a selective-kernel (SK, Li et al.
2019) convolution in place of every bottleneck's 3x3 conv. As released (google-research/
simclr, `sk_conv2d`), one 3x3 conv makes 2x the channels, split into two streams (both
3x3: the released code does not dilate the second as the SK paper does); their sum,
globally pooled, goes through a 1x1 conv -> BN -> ReLU -> 1x1 conv to 2x the channels,
which a softmax over the two streams turns into per-channel mixing weights. The same
models use ResNet-D (He et al. 2019, "bag of tricks"): a stem of three 3x3 convs and
projection shortcuts that average-pool before a stride-1 1x1 conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SK_RATIO = 0.0625  # the fuse layer's width as a fraction of the stream's channels (SimCLRv2's sk_ratio)
SK_MIN_DIM = 32  # ... but never narrower than this


class SKConv2d(nn.Module):
    """(B, in, H, W) -> (B, channels, H/stride, W/stride): two 3x3 streams mixed per channel by attention."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(in_channels, 2 * channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2 * channels)
        mid = max(int(channels * SK_RATIO), SK_MIN_DIM)
        self.fuse = nn.Sequential(nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        self.select = nn.Conv2d(mid, 2 * channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        streams = F.relu(self.bn(self.conv(x))).unflatten(1, (2, self.channels))  # (B, 2, C, H, W)
        summary = streams.sum(1).mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        logits = self.select(self.fuse(summary)).unflatten(1, (2, self.channels))  # (B, 2, C, 1, 1)
        return (streams * logits.softmax(1)).sum(1)


def deep_stem(in_channels: int, channels: int) -> nn.Sequential:
    """ResNet-D's stem: 3x3 stride 2 to half the channels, 3x3, 3x3 to all (the caller adds BN, ReLU, max-pool)."""
    half = channels // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(inplace=True),
        nn.Conv2d(half, half, 3, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(inplace=True),
        nn.Conv2d(half, channels, 3, padding=1, bias=False),
    )


def avg_down(downsample: nn.Sequential, stride: int) -> nn.Sequential:
    """ResNet-D's shortcut: a strided 1x1 conv that skips 3/4 of the positions becomes avg-pool, then 1x1.

    A stride-1 shortcut is left as it is (the released code blurs it with a 2x2 stride-1
    pool; ResNet-D and timm do not, and it changes no parameter count).
    """
    conv, bn = downsample
    if stride == 1:
        return downsample
    conv.stride = (1, 1)
    pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
    return nn.Sequential(pool, conv, bn)
