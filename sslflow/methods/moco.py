"""MoCo v2 (He et al. 2020; Chen et al. 2020, "Improved baselines"): a momentum encoder and a queue of negatives.

The query encoder is the backbone and a 2-layer MLP head (v2's addition); the
key encoder is its EMA copy (momentum m, no gradient), and the keys of the
last `queue_size` images are the negatives. The views are SimCLR's (v2's other
addition: colour jitter, grey, crop, flip). The loss is InfoNCE at
temperature t, symmetrised over the two views (each query's positive is the
key of the other view); besides the queue, the keys of the current global
batch are negatives too (sslflow.methods.losses.info_nce_with_queue, the loss
SimCLRv2's memory bank uses).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from sslflow.methods.base import Method
from sslflow.methods.losses import gather_no_grad, info_nce_with_queue
from sslflow.methods.momentum import EMA, KeyQueue
from sslflow.methods.spec import BuildContext, MethodSpec
from sslflow.models.heads import head_cfg, projection_head
from sslflow.schedule import Overrides


class MoCoCfg(Overrides):
    temperature: float = Field(0.2, gt=0, description="MoCo v2's 0.2")
    proj_dim: int = Field(128, gt=0, description="key and query dimension")
    proj_hidden: int = Field(0, ge=0, description="hidden width of the MLP head; 0 = the backbone's feature width")
    queue_size: int = Field(65536, gt=0, description="negatives kept from earlier steps")
    momentum: float = Field(0.999, ge=0, lt=1, description="EMA of the key encoder")


class MoCo(Method):
    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int,
        *,
        temperature: float,
        proj_dim: int,
        proj_hidden: int,
        queue_size: int,
        momentum: float,
    ) -> None:
        super().__init__(backbone)
        self.temperature = temperature
        self.head_cfg = head_cfg(out_dim, proj_hidden, proj_dim, 2)
        self.head = projection_head(**self.head_cfg)
        self.key_encoder = EMA(backbone, self.head, momentum=momentum)
        self.queue = KeyQueue(queue_size, proj_dim)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = batch["view1"].shape[0]
        views = torch.cat([batch["view1"], batch["view2"]])
        q = self.head(self.backbone(views))
        keys = self.keys(views)
        k1, k2 = gather_no_grad(keys[:n]), gather_no_grad(keys[n:])
        loss, accuracy = info_nce_with_queue(q[:n], q[n:], k1, k2, self.queue.keys, self.temperature)
        self.queue.push(torch.cat([k1, k2]))  # after the loss: this batch's keys are negatives from the next step on
        return loss, {"acc": accuracy.detach()}

    @torch.no_grad()
    def keys(self, views: torch.Tensor) -> torch.Tensor:
        """The key encoder's projections of this rank's views (view1 rows, then view2 rows)."""
        return self.key_encoder(views)

    def batch_images(self, batch: dict) -> int:
        return batch["view1"].shape[0]

    def after_step(self) -> None:
        self.key_encoder.update(self.backbone, self.head)

    def encoder_head(self) -> tuple[nn.Module | None, dict | None]:
        return self.head, self.head_cfg


def build(ctx: BuildContext) -> MoCo:
    s = ctx.section
    return MoCo(
        ctx.backbone,
        ctx.out_dim,
        temperature=s.temperature,
        proj_dim=s.proj_dim,
        proj_hidden=s.proj_hidden or ctx.out_dim,
        queue_size=s.queue_size,
        momentum=s.momentum,
    )


METHODS = (MethodSpec(name="moco", label="MoCo v2", section=MoCoCfg, views="simclr", build=build),)
