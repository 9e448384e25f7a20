"""The pieces momentum-encoder methods share: an EMA copy of the online network and a queue of keys.

SimCLRv2's memory bank, MoCo (He et al. 2020) and BYOL (Grill et al. 2020)
all keep a slowly moving copy of the online encoder, updated after each
optimiser step as target <- m * target + (1 - m) * online; MoCo and SimCLRv2
also keep a FIFO of that copy's outputs from earlier steps as extra negatives.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's schedule: tau = 1 - (1 - base) * (cos(pi k / K) + 1) / 2, from `base` at step 0 to 1 at step K."""
    progress = min(step, total_steps) / max(1, total_steps)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class EMA(nn.Module):
    """Frozen copies of `modules`, applied in sequence, that follow them by exponential moving average.

    momentum: the base m. With total_steps, m follows `cosine_momentum` over the
    run (BYOL); without, it stays m (MoCo, SimCLRv2). BatchNorm running
    statistics are copied, not averaged. `step` is a buffer, so a resumed run
    continues the schedule where it stopped.
    """

    def __init__(self, *modules: nn.Module, momentum: float, total_steps: int | None = None) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(m).requires_grad_(False) for m in modules)
        self.base = momentum
        self.total_steps = total_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def momentum(self) -> float:
        """m for the next update."""
        if not self.total_steps:
            return self.base
        return cosine_momentum(self.base, int(self.step), self.total_steps)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.copies:
            x = module(x)
        return x

    @torch.no_grad()
    def update(self, *online: nn.Module) -> None:
        """target <- m target + (1 - m) online, for the modules given at construction, in the same order."""
        m = self.momentum()
        for source, target in zip(online, self.copies, strict=True):
            for p, q in zip(source.parameters(), target.parameters(), strict=True):
                q.lerp_(p.detach(), 1.0 - m)
            for b, c in zip(source.buffers(), target.buffers(), strict=True):
                c.copy_(b)
        self.step += 1


class KeyQueue(nn.Module):
    """A FIFO of the last `size` normalised keys (a ring buffer, oldest overwritten first).

    Starts as random unit vectors, as MoCo's does. Under DDP every rank pushes
    the same gathered keys, so every rank holds the same queue.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        keys = F.normalize(keys.float(), dim=1)[-self.size :]  # more keys than room: the newest stay
        index = (self.ptr + torch.arange(keys.shape[0], device=keys.device)) % self.size
        self.keys[index] = keys.to(self.keys.dtype)
        self.ptr.copy_((self.ptr + keys.shape[0]) % self.size)
