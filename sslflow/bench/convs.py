"""The step's convolutions alone: how near the matrix units this network's shapes can run at all.

A large square matmul is what a machine's matrix units are rated by; a small
network's convolutions are not that shape (16-128 channels at 28 px: skinny
matrices, strided 1x1 shortcuts). Timing each convolution of one training step
on its own, forward and backward, with the input shape, dtype and memory layout
it had in the step, gives the rate this network's arithmetic runs at on this
machine with nothing else around it. The step cannot beat it: its time is at
least its convolutions' time, so its FLOP/s are at most that rate divided by
the convolutions' share of its FLOPs (`step_bound`), whatever is done about
normalisation, activations, the loss or the optimizer.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sslflow.precision import autocast


@dataclass(frozen=True)
class ConvCall:
    """One convolution call of a step: the layer, what it was given, and what its backward computed."""

    conv: nn.Conv2d
    shape: tuple[int, ...]
    dtype: torch.dtype
    channels_last: bool
    grad_input: bool  # the input needed a gradient (every layer but the first)
    grad_weight: bool  # the layer was trained (not a momentum encoder's forward)


def step_convolutions(model: nn.Module, step: Callable[[], object]) -> list[ConvCall]:
    """The convolutions `step()` calls in `model`, in call order, as each one was called."""
    calls: list[ConvCall] = []

    def record(conv: nn.Conv2d, inputs: tuple, output) -> None:
        x = inputs[0]
        grad = torch.is_grad_enabled()
        calls.append(
            ConvCall(
                conv=conv,
                shape=tuple(x.shape),
                dtype=x.dtype,
                channels_last=x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last),
                grad_input=grad and x.requires_grad,
                grad_weight=grad and conv.weight.requires_grad,
            )
        )

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        step()
    finally:
        for hook in hooks:
            hook.remove()
    return calls


class ConvCeiling:
    """The recorded convolutions, each on its own copy of the layer and a random input of the recorded kind."""

    def __init__(self, calls: list[ConvCall], device: torch.device, bf16: bool) -> None:
        self.device, self.bf16 = torch.device(device), bf16
        self._work = [self._prepare(call) for call in calls]

    def _prepare(self, call: ConvCall) -> tuple[nn.Conv2d, torch.Tensor, bool]:
        conv = copy.deepcopy(call.conv).to(self.device)
        conv.requires_grad_(call.grad_weight)
        x = torch.randn(call.shape, device=self.device).to(call.dtype)
        if call.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return conv, x.requires_grad_(call.grad_input), call.grad_input or call.grad_weight

    def run(self) -> None:
        """Every convolution once: forward, and backward where the step took one."""
        for conv, x, backward in self._work:
            with autocast(self.device, self.bf16):
                y = conv(x)
            if backward:
                y.backward(torch.ones_like(y))
            conv.zero_grad(set_to_none=True)
            x.grad = None

    def flops(self) -> int:
        """FLOPs of one `run()`, by torch's flop counter (convolution and its backward)."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.run()
        return counter.get_total_flops()

    def flops_per_s(self, warmup: int, repeats: int) -> float:
        """FLOP/s over `repeats` runs after `warmup` untimed ones, as the step is timed."""
        flops = self.flops()
        for _ in range(warmup):
            self.run()
        self._sync()
        start = time.perf_counter()
        for _ in range(repeats):
            self.run()
        self._sync()
        return round(flops * repeats / (time.perf_counter() - start))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
