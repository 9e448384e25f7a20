"""SimCLR (Chen et al. 2020) and SimCLRv2's additions.

z = g(f(x)): the backbone f, then the projection head g (2 layers in v1, 3 in
v2); NT-Xent over the two views of the global batch. With queue_size > 0, the
SimCLRv2 memory bank: a momentum (EMA) copy of f and g encodes keys, and a
queue of keys from earlier steps adds negatives (MoCo, He et al. 2020).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from sslflow.methods.base import Method
from sslflow.methods.losses import gather_no_grad, info_nce_with_queue, nt_xent
from sslflow.methods.momentum import EMA, KeyQueue
from sslflow.methods.spec import BuildContext, MethodSpec
from sslflow.models.heads import head_cfg, projection_head
from sslflow.schedule import Overrides


class SimCLRCfg(Overrides):
    temperature: float = Field(0.5, gt=0)
    proj_dim: int = Field(128, gt=0, description="output of the projection head")
    proj_hidden: int = Field(0, ge=0, description="hidden width; 0 = the backbone's feature width")
    proj_layers: int = Field(2, ge=1, le=4, description="2 = SimCLR v1, 3 = SimCLRv2")
    queue_size: int = Field(0, ge=0, description="SimCLRv2 memory bank: negatives kept from earlier steps; 0 = off")
    momentum: float = Field(0.99, ge=0, lt=1, description="EMA of the momentum encoder (with a queue)")


class SimCLRv2Cfg(SimCLRCfg):
    proj_layers: int = Field(3, ge=1, le=4)


class SimCLR(Method):
    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int,
        *,
        temperature: float,
        proj_dim: int,
        proj_hidden: int,
        proj_layers: int,
        queue_size: int = 0,
        momentum: float = 0.99,
    ) -> None:
        super().__init__(backbone)
        self.temperature = temperature
        self.head_cfg = head_cfg(out_dim, proj_hidden, proj_dim, proj_layers)
        self.head = projection_head(**self.head_cfg)
        self.queue_size = queue_size
        if queue_size:
            self.momentum_encoder = EMA(backbone, self.head, momentum=momentum)
            self.queue = KeyQueue(queue_size, proj_dim)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views = torch.cat([batch["view1"], batch["view2"]])
        n = batch["view1"].shape[0]
        z = self.head(self.backbone(views))
        if not self.queue_size:
            loss, accuracy = nt_xent(z[:n], z[n:], self.temperature)
            return loss, {"acc": accuracy.detach()}
        with torch.no_grad():
            keys = self.momentum_encoder(views)
            k1, k2 = gather_no_grad(keys[:n]), gather_no_grad(keys[n:])
        loss, accuracy = info_nce_with_queue(z[:n], z[n:], k1, k2, self.queue.keys, self.temperature)
        self.queue.push(torch.cat([k1, k2]))
        return loss, {"acc": accuracy.detach()}

    def batch_images(self, batch: dict) -> int:
        return batch["view1"].shape[0]

    def after_step(self) -> None:
        if self.queue_size:
            self.momentum_encoder.update(self.backbone, self.head)

    def encoder_head(self) -> tuple[nn.Module | None, dict | None]:
        return self.head, self.head_cfg


def build(ctx: BuildContext) -> SimCLR:
    s = ctx.section
    return SimCLR(
        ctx.backbone,
        ctx.out_dim,
        temperature=s.temperature,
        proj_dim=s.proj_dim,
        proj_hidden=s.proj_hidden or ctx.out_dim,
        proj_layers=s.proj_layers,
        queue_size=s.queue_size,
        momentum=s.momentum,
    )


METHODS = (
    MethodSpec(name="simclr", label="SimCLR", section=SimCLRCfg, views="simclr", build=build),
    MethodSpec(name="simclr_v2", label="SimCLRv2", section=SimCLRv2Cfg, views="simclr", build=build),
)
