"""torchvision ResNets with a width multiplier, a small-image stem and SimCLRv2's SK option, classifier removed.

torchvision's ResNet fixes the stage widths at 64-128-256-512 (``width_per_group``
only widens bottleneck interiors), so a subclass scales ``planes`` as each stage
is made and rebuilds the stem for the input's channel count and size. With
``model.sk`` the bottlenecks' 3x3 convs are selective-kernel convs and the stem and
shortcuts are ResNet-D's, as in SimCLRv2's released ResNet-152 (3x+SK) (models/sk.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from sslflow.models.config import ARCHS, ModelCfg
from sslflow.models.sk import SKConv2d, avg_down, deep_stem

BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class SKBottleneck(Bottleneck):
    """torchvision's bottleneck (stride on the 3x3) with the 3x3 conv + BN as one SK conv (BN inside)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        width = self.conv2.out_channels
        self.conv2 = SKConv2d(width, width, self.stride)
        self.bn2 = nn.Identity()  # the block's ReLU after it changes nothing: SK mixes non-negative streams


class Pool(nn.AdaptiveAvgPool2d):
    """Average pooling to a fixed grid that passes a map already of that size through as it is.

    The 28 px profile's last map is 4x4 and so is its grid: each window holds one
    value, so the pool is an identity, whose backward still took 2% of a CPU
    training step. Passing the map through gives the same values and gradients.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.output_size
        if tuple(x.shape[-2:]) == ((size, size) if isinstance(size, int) else tuple(size)):
            return x
        return super().forward(x)


class Backbone(ResNet):
    """ResNet trunk mapping (B, C, H, W) to pooled features (B, out_dim)."""

    def __init__(self, cfg: ModelCfg, in_channels: int) -> None:
        self.width, self.sk = cfg.width, cfg.sk
        kind, layers = ARCHS[cfg.arch]
        block = SKBottleneck if cfg.sk else BLOCKS[kind]
        super().__init__(block, layers)
        stem = self._scaled(64)
        if cfg.small_stem:
            self.conv1 = nn.Conv2d(in_channels, stem, 3, stride=cfg.stem_stride, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif cfg.sk:
            self.conv1 = deep_stem(in_channels, stem)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False)
        for m in self.conv1.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = nn.BatchNorm2d(stem)
        # Small images: a global pool throws away where things are, which a linear probe on a
        # 28 px garment needs; pooling to 2x2 keeps a coarse layout (features x4).
        self.avgpool = Pool(cfg.pool)
        self.out_dim = self._scaled(512) * block.expansion * cfg.pool**2
        self.fc = nn.Identity()
        if cfg.zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _scaled(self, channels: int) -> int:
        return max(1, round(channels * self.width))

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        # ResNet.__init__ sets inplanes=64 before the first stage; the stem's width scales too.
        if "layer1" not in self._modules:
            self.inplanes = self._scaled(64)
        layer = super()._make_layer(block, self._scaled(planes), blocks, stride, dilate)
        first = layer[0]
        if self.sk and first.downsample is not None:
            first.downsample = avg_down(first.downsample, stride)
        return layer


def build_backbone(cfg: ModelCfg, in_channels: int) -> Backbone:
    return Backbone(cfg, in_channels)


def describe(cfg: ModelCfg) -> str:
    """Table name of a backbone, as in the papers' tables: 'ResNet-50 (2x)', 'ResNet-152 (3x+SK)', 'ResNet-18 (0.5x, small stem)'."""
    name = "ResNet-" + cfg.arch.removeprefix("resnet")
    extras = [f"{cfg.width:g}x+SK"] if cfg.sk else [] if cfg.width == 1 else [f"{cfg.width:g}x"]
    if cfg.small_stem:
        extras.append("small stem" + (f" /{cfg.stem_stride}" if cfg.stem_stride != 1 else ""))
    if cfg.pool != 1:
        extras.append(f"{cfg.pool}x{cfg.pool} pool")
    return f"{name} ({', '.join(extras)})" if extras else name


def count_params_m(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6
