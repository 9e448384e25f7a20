"""SimCLR (Chen et al. 2020) and SimCLRv2's additions.

z = g(f(x)): the backbone f, then the projection head g (2 layers in v1, 3 in
v2); NT-Xent over the two views of the global batch. With queue_size > 0, the
SimCLRv2 memory bank: a momentum (EMA) copy of f and g encodes keys, and a
queue of keys from earlier steps adds negatives (MoCo, He et al. 2020).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from sslflow.methods.base import Method
from sslflow.methods.losses import gather_no_grad, info_nce_with_queue, nt_xent
from sslflow.models.heads import head_cfg, projection_head


class SimCLR(Method):
    kind = "simclr"

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
        self.momentum = momentum
        self.head_cfg = head_cfg(out_dim, proj_hidden, proj_dim, proj_layers)
        self.head = projection_head(**self.head_cfg)
        self.queue_size = queue_size
        if queue_size:
            self.momentum_backbone = copy.deepcopy(backbone).requires_grad_(False)
            self.momentum_head = copy.deepcopy(self.head).requires_grad_(False)
            self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views = torch.cat([batch["view1"], batch["view2"]])
        n = batch["view1"].shape[0]
        z = self.head(self.backbone(views))
        if not self.queue_size:
            loss, accuracy = nt_xent(z[:n], z[n:], self.temperature)
            return loss, {"acc": accuracy.detach()}
        with torch.no_grad():
            keys = self.momentum_head(self.momentum_backbone(views))
            k1, k2 = gather_no_grad(keys[:n]), gather_no_grad(keys[n:])
        loss, accuracy = info_nce_with_queue(z[:n], z[n:], k1, k2, self.queue, self.temperature)
        self._enqueue(torch.cat([k1, k2]))
        return loss, {"acc": accuracy.detach()}

    def batch_images(self, batch: dict) -> int:
        return batch["view1"].shape[0]

    @torch.no_grad()
    def after_step(self) -> None:
        """EMA of the online weights; BN running statistics are copied."""
        if not self.queue_size:
            return
        for online, ema in ((self.backbone, self.momentum_backbone), (self.head, self.momentum_head)):
            for p, q in zip(online.parameters(), ema.parameters()):
                q.lerp_(p.detach(), 1.0 - self.momentum)
            for b, c in zip(online.buffers(), ema.buffers()):
                c.copy_(b)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Ring buffer: the newest keys overwrite the oldest (keys are the same on every rank)."""
        keys = F.normalize(keys.float(), dim=1)[: self.queue_size]
        index = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % self.queue_size
        self.queue[index] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % self.queue_size)

    def encoder_head(self) -> tuple[nn.Module | None, dict | None]:
        return self.head, self.head_cfg
