"""Rotation prediction (Gidaris et al. 2018): 4-way classification of 0/90/180/270 degrees.

The loader already stacks the four rotations of each image with their targets.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from sslflow.methods.base import Method, classification
from sslflow.methods.spec import BuildContext, MethodSpec
from sslflow.models.heads import classifier
from sslflow.schedule import Overrides


class RotationCfg(Overrides):
    hidden: int = Field(0, ge=0, description="hidden width of the 4-way head; 0 = linear")


class Rotation(Method):
    def __init__(self, backbone: nn.Module, out_dim: int, hidden_dim: int = 0) -> None:
        super().__init__(backbone)
        self.classifier = classifier(out_dim, 4, hidden_dim)

    def forward(self, batch: dict):
        return classification(self.classifier(self.backbone(batch["image"])), batch["target"])

    def batch_images(self, batch: dict) -> int:
        return batch["image"].shape[0] // 4


def build(ctx: BuildContext) -> Rotation:
    return Rotation(ctx.backbone, ctx.out_dim, ctx.section.hidden)


METHODS = (MethodSpec(name="rotation", label="Rotation", section=RotationCfg, views="rotation", build=build),)
