"""Exemplar CNN / surrogate classes (Dosovitskiy et al. 2014): N-way classification,
each class the augmentations of one seed image. The loader assigns the surrogate ids.
"""

from __future__ import annotations

from torch import nn

from sslflow.methods.base import Method, classification
from sslflow.methods.losses import float32_logits
from sslflow.methods.spec import BuildContext, MethodSpec
from sslflow.models.heads import classifier
from sslflow.schedule import Overrides


class ExemplarCfg(Overrides):
    """The surrogate classes themselves are a view setting: augment.exemplar."""


class Exemplar(Method):
    def __init__(self, backbone: nn.Module, out_dim: int, num_classes: int) -> None:
        super().__init__(backbone)
        self.classifier = classifier(out_dim, num_classes)

    def forward(self, batch: dict):
        return classification(float32_logits(self.classifier, self.backbone(batch["image"])), batch["target"])

    def batch_images(self, batch: dict) -> int:
        return batch["image"].shape[0]


def build(ctx: BuildContext) -> Exemplar:
    return Exemplar(ctx.backbone, ctx.out_dim, ctx.params.augment.exemplar.classes)


METHODS = (
    MethodSpec(
        name="exemplar", label="Exemplar (surrogate classes)", section=ExemplarCfg, views="exemplar", build=build
    ),
)
