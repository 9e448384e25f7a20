"""The bench's convolutions-alone ceiling: the step's convolutions as they were called, and their FLOPs."""

from __future__ import annotations

import torch
from torch import nn

from sslflow.bench.convs import ConvCeiling, step_convolutions


def conv_flops(c_in: int, c_out: int, k: int, n: int, h_out: int, w_out: int) -> int:
    """Multiply-adds x 2 of one convolution's forward (its input and weight gradients cost the same each)."""
    return 2 * n * c_out * h_out * w_out * c_in * k * k


def test_the_ceiling_times_what_the_step_called_and_counts_its_flops():
    torch.manual_seed(0)
    trained = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1))
    trained.to(memory_format=torch.channels_last)
    frozen = nn.Conv2d(8, 8, 1).requires_grad_(False)  # a momentum encoder's layer: forward only
    x = torch.randn(6, 2, 12, 12).contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = trained(x)
            with torch.no_grad():
                frozen(y)
        y.float().sum().backward()

    calls = step_convolutions(trained, step)
    assert [c.conv for c in calls] == [trained[0], trained[2]]  # only the model's own layers
    assert [c.shape for c in calls] == [(6, 2, 12, 12), (6, 4, 12, 12)]
    # autocast hands the second layer the first one's bf16 output, in channels_last
    assert [c.dtype for c in calls] == [torch.float32, torch.bfloat16]
    assert calls[0].channels_last and calls[1].channels_last
    assert [c.grad_input for c in calls] == [False, True] and all(c.grad_weight for c in calls)

    (frozen_call,) = step_convolutions(frozen, step)
    assert not frozen_call.grad_input and not frozen_call.grad_weight

    ceiling = ConvCeiling([*calls, frozen_call], torch.device("cpu"), bf16=True)
    first = conv_flops(2, 4, 3, 6, 12, 12) * 2  # forward + weight gradient: the image needs none
    second = conv_flops(4, 8, 3, 6, 6, 6) * 3  # forward + input and weight gradients
    third = conv_flops(8, 8, 1, 6, 6, 6)  # forward only
    assert ceiling.flops() == first + second + third
    assert ceiling.flops_per_s(warmup=0, repeats=2) > 0
    # the copies are timed, the step's own layers keep their weights and gradients untouched
    assert trained[0].weight.grad is not None and all(p.grad is None for p in frozen.parameters())
