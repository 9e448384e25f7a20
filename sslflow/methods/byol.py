"""BYOL (Grill et al. 2020): an online network predicts the target network's projection of the other view.

Online: backbone f, projector g (MLP), predictor q (MLP of the same shape);
target: an EMA copy of f and g whose momentum rises from tau_base to 1 on a
cosine over the run, tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2. The
loss is the mean squared error of the L2-normalised prediction and target
projection, 2 - 2 cos(q(z), z'), for both orders of the two views, summed
(the paper's L + L~). No negatives: the predictor and the slowly moving
target keep it from collapsing. Gradients reach only the online network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from sslflow.methods.base import Method
from sslflow.methods.momentum import EMA
from sslflow.methods.spec import BuildContext, MethodSpec
from sslflow.models.heads import head_cfg, projection_head
from sslflow.schedule import Overrides


class BYOLCfg(Overrides):
    proj_dim: int = Field(256, gt=0, description="projection (and prediction) dimension")
    proj_hidden: int = Field(4096, gt=0, description="hidden width of the projector")
    pred_hidden: int = Field(4096, gt=0, description="hidden width of the predictor")
    momentum: float = Field(0.996, ge=0, lt=1, description="tau_base: the target's EMA momentum at step 0")


def regression_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z); z carries no gradient."""
    p = F.normalize(p.float(), dim=1)
    z = F.normalize(z.detach().float(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()


class BYOL(Method):
    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int,
        *,
        proj_dim: int,
        proj_hidden: int,
        pred_hidden: int,
        momentum: float,
        total_steps: int,
    ) -> None:
        super().__init__(backbone)
        self.head_cfg = head_cfg(out_dim, proj_hidden, proj_dim, 2)
        self.projector = projection_head(**self.head_cfg)
        self.predictor = projection_head(proj_dim, pred_hidden, proj_dim, 2)
        self.target = EMA(backbone, self.projector, momentum=momentum, total_steps=total_steps)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = batch["view1"].shape[0]
        views = torch.cat([batch["view1"], batch["view2"]])
        p = self.predictor(self.projector(self.backbone(views)))
        z = self.target(views)
        loss = regression_loss(p[:n], z[n:]) + regression_loss(p[n:], z[:n])
        return loss, {"acc": _retrieval(p[:n], z[n:])}

    def batch_images(self, batch: dict) -> int:
        return batch["view1"].shape[0]

    def after_step(self) -> None:
        self.target.update(self.backbone, self.projector)

    def encoder_head(self) -> tuple[nn.Module | None, dict | None]:
        return self.projector, self.head_cfg


@torch.no_grad()
def _retrieval(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """How often a prediction is closest to its own image's target among this rank's batch (a monitor only)."""
    sim = F.normalize(p.float(), dim=1) @ F.normalize(z.float(), dim=1).T
    return (sim.argmax(dim=1) == torch.arange(p.shape[0], device=p.device)).float().mean()


def build(ctx: BuildContext) -> BYOL:
    s = ctx.section
    return BYOL(
        ctx.backbone,
        ctx.out_dim,
        proj_dim=s.proj_dim,
        proj_hidden=s.proj_hidden,
        pred_hidden=s.pred_hidden,
        momentum=s.momentum,
        total_steps=ctx.total_steps,
    )


METHODS = (MethodSpec(name="byol", label="BYOL", section=BYOLCfg, views="simclr", build=build),)
