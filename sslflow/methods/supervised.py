"""The supervised control: the same backbone and loop, cross-entropy on the true labels
of crop+flip views, so the tables compare methods on one budget.
"""

from __future__ import annotations

from torch import nn

from sslflow.methods.base import Method, classification
from sslflow.methods.spec import BuildContext, MethodSpec
from sslflow.models.heads import classifier
from sslflow.schedule import Overrides


class SupervisedCfg(Overrides):
    pass


class Supervised(Method):
    def __init__(self, backbone: nn.Module, out_dim: int, num_classes: int) -> None:
        super().__init__(backbone)
        self.classifier = classifier(out_dim, num_classes)

    def forward(self, batch: dict):
        return classification(self.classifier(self.backbone(batch["image"])), batch["label"])

    def batch_images(self, batch: dict) -> int:
        return batch["image"].shape[0]


def build(ctx: BuildContext) -> Supervised:
    return Supervised(ctx.backbone, ctx.out_dim, ctx.num_classes)


METHODS = (
    MethodSpec(
        name="supervised", label="Supervised", section=SupervisedCfg, views="supervised", build=build, control=True
    ),
)
