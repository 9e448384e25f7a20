"""The two controls that train nothing: the same backbone at its initial weights, and the pixels themselves.

They go through the same encoder file so that extraction and probes treat
them exactly like the trained methods.
"""

from __future__ import annotations

import torch
from torch import nn

from sslflow.methods.spec import MethodSpec
from sslflow.section import Section


class ControlCfg(Section):
    """random_init / raw_pixels train nothing; the section exists for dvc's per-method params."""


def random_init_encoder(params, in_channels: int) -> nn.Module:
    """The backbone every method starts from (same seed, so the same weights as their step 0)."""
    from sslflow.models.backbone import build_backbone  # torchvision: seconds that parsing params should not pay

    torch.manual_seed(params.seed)
    return build_backbone(params.model, in_channels)


def raw_pixels_encoder(params=None, in_channels: int = 0) -> nn.Module:
    """Flattened normalised pixels: the linear-model-on-pixels baseline."""
    return nn.Flatten()


METHODS = (
    MethodSpec(
        name="random_init",
        label="Random init (untrained)",
        section=ControlCfg,
        encoder=random_init_encoder,
        control=True,
    ),
    MethodSpec(name="raw_pixels", label="Raw pixels", section=ControlCfg, encoder=raw_pixels_encoder, control=True),
)
