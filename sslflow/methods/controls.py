"""The two controls that train nothing: the same backbone at its initial weights, and the pixels themselves.

They go through the same encoder file so that extraction and probes treat
them exactly like the trained methods.
"""

from __future__ import annotations

import torch
from torch import nn

from sslflow.models.backbone import build_backbone


def random_init_encoder(params, in_channels: int) -> nn.Module:
    """The backbone every method starts from (same seed, so the same weights as their step 0)."""
    torch.manual_seed(params.seed)
    return build_backbone(params.model, in_channels)


def raw_pixels_encoder() -> nn.Module:
    """Flattened normalised pixels: the linear-model-on-pixels baseline."""
    return nn.Flatten()
