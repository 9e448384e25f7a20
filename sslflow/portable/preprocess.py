"""The eval view as a module: a batch of pictures -> the normalised tensor the encoder was scored on.

The steps and their order are the torchvision backend's eval transform
(sslflow/augment/torchvision_ops.py): shorter side resized (bilinear, antialiased;
on uint8 pixels, as there), centre crop, pixels / 255, (x - mean) / std. Built
into a loaded encoder so that a user passes pictures, not sslflow's tensors.
"""

from __future__ import annotations

import torch
from torch import nn


class EvalPreprocess(nn.Module):
    """uint8 (B, H, W, C) or (B, H, W) grey, or float (B, C, H, W) in [0, 1] -> float32 (B, C, S, S), normalised.

    Grey pictures are repeated to 3 channels when the encoder takes 3 (as
    ``augment.channels: 3`` does with a grey source).
    """

    def __init__(self, preprocess: dict, in_channels: int) -> None:
        super().__init__()
        self.resize = int(preprocess["resize_shorter_to"])
        self.crop = int(preprocess["center_crop"])
        self.in_channels = in_channels
        self.register_buffer("mean", torch.tensor(preprocess["mean"], dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(preprocess["std"], dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        x = self._channels_first(images)
        if min(x.shape[-2:]) != self.resize:
            x = F.resize(x, self.resize, antialias=True)
        if tuple(x.shape[-2:]) != (self.crop, self.crop):
            x = F.center_crop(x, [self.crop, self.crop])
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return (x.float() - self.mean) / self.std

    def _channels_first(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            if images.ndim == 3:  # (B, H, W): grey
                images = images.unsqueeze(-1)
            if images.ndim != 4:
                raise ValueError(f"uint8 images: expected (B, H, W, C) or (B, H, W), got {tuple(images.shape)}")
            images = images.permute(0, 3, 1, 2)
        elif not images.is_floating_point() or images.ndim != 4:
            raise ValueError(
                f"images: expected uint8 (B, H, W, C) or float (B, C, H, W) in [0, 1], got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        channels = images.shape[1]
        if channels == 1 and self.in_channels == 3:
            images = images.expand(-1, 3, -1, -1)
        elif channels != self.in_channels:
            raise ValueError(f"images: {channels} channels, the encoder takes {self.in_channels}")
        return images
