"""Which precision the networks run in, and the autocast context that applies it.

`train.precision: auto` means bf16 autocast wherever the hardware multiplies bf16
natively: every CUDA GPU this project targets, and CPUs with AMX (Intel Sapphire
Rapids and later), where oneDNN's bf16 convolutions train the CPU profile's
ResNet-18 about 1.4x faster than fp32 (README). Elsewhere a CPU emulates bf16,
which is slower than fp32, so auto stays fp32 there. Losses and logits are
computed in float32 whatever this says (sslflow.methods.losses).

The same answer serves pretraining, fine-tuning, distillation and extraction, so
one key decides how every network of a run computes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cache

import torch


@cache
def cpu_has_amx_bf16() -> bool:
    """True on CPUs whose AMX tiles multiply bf16 (what makes CPU autocast pay)."""
    return bool(torch.cpu.get_capabilities().get("amx_bf16", False))


def use_bf16(precision: str, device: torch.device | str) -> bool:
    """Resolve `train.precision` (auto | bf16 | fp32) for the device a network runs on."""
    if precision != "auto":
        return precision == "bf16"
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and cpu_has_amx_bf16())


def autocast(device: torch.device | str, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on the device's type when asked, else a no-op context."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16 else nullcontext()
