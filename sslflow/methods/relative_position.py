"""Relative position (Doersch et al. 2015): where, of 8 neighbours, does the second patch sit?

Siamese with late fusion: one backbone embeds both patches (shared weights,
one forward over both), the two features are concatenated and an MLP
classifies the 8 positions. Fusing only after the backbone keeps the backbone
a single-patch feature extractor, which is what gets evaluated.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from sslflow.methods.base import Method, classification
from sslflow.methods.spec import BuildContext, MethodSpec
from sslflow.models.heads import classifier
from sslflow.schedule import Overrides


class RelPosCfg(Overrides):
    hidden: int = Field(512, gt=0, description="hidden width of the late-fusion MLP")


class RelativePosition(Method):
    def __init__(self, backbone: nn.Module, out_dim: int, hidden_dim: int) -> None:
        super().__init__(backbone)
        self.classifier = classifier(2 * out_dim, 8, hidden_dim)

    def forward(self, batch: dict):
        n = batch["center"].shape[0]
        features = self.backbone(torch.cat([batch["center"], batch["neighbour"]]))
        fused = torch.cat([features[:n], features[n:]], dim=1)
        return classification(self.classifier(fused), batch["target"])

    def batch_images(self, batch: dict) -> int:
        return batch["center"].shape[0]


def build(ctx: BuildContext) -> RelativePosition:
    return RelativePosition(ctx.backbone, ctx.out_dim, ctx.section.hidden)


METHODS = (MethodSpec(name="relpos", label="Relative position", section=RelPosCfg, views="relpos", build=build),)
