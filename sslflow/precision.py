"""Which precision the networks run in, and the autocast context that applies it.

`train.precision: auto` means bf16 autocast wherever the hardware multiplies bf16
natively: every CUDA GPU this project targets, and CPUs with AMX tiles (Intel
Sapphire Rapids and later) or AVX512-BF16 dot products (Cooper Lake, AMD Zen 4
and later), where oneDNN's bf16 kernels run about twice the fp32 rate (a 2048^3
matmul on two loaded EPYC cores: 201 against 93 GFLOP/s; `sslflow bench
pretrain` prints both for the step). Either unit computes the same bf16
products with float32 accumulation, so a run's numbers do not depend on which
one did it. Elsewhere a CPU emulates bf16, slower than fp32, so auto stays
fp32 there. Losses and logits are
computed in float32 whatever this says (sslflow.methods.losses).

The same answer serves pretraining, fine-tuning, distillation, extraction and
export, so one key decides how every network of a run computes, and this module
sits below the loop (sslflow/train) and the evaluation (sslflow/eval) alike.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cache

import torch

# the CPU capabilities (torch.cpu.get_capabilities) that multiply bf16 natively
NATIVE_BF16 = frozenset({"amx_bf16", "avx512_bf16"})


@cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set capabilities this CPU has, as torch's dispatcher sees them."""
    return frozenset(name for name, present in torch.cpu.get_capabilities().items() if present is True)


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose AMX tiles or AVX512-BF16 dot products multiply bf16 (what makes CPU autocast pay)."""
    return bool(NATIVE_BF16 & cpu_flags())


def use_bf16(precision: str, device: torch.device | str) -> bool:
    """Resolve `train.precision` (auto | bf16 | fp32) for the device a network runs on."""
    if precision != "auto":
        return precision == "bf16"
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16())


def autocast(device: torch.device | str, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on the device's type when asked, else a no-op context."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16 else nullcontext()
