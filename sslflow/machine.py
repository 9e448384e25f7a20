"""The machine a measurement ran on, in one line: CPU speeds differ with the model and its bf16 units.

Standard library only: benchmarks/stage_times.py runs it with the system's python3, outside the
project's virtualenv.
"""

from __future__ import annotations

import os
from pathlib import Path

# /proc/cpuinfo's flags for the units that make `train.precision: auto` bf16 (sslflow.precision.NATIVE_BF16)
BF16_UNITS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"))


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Model name, cores, and the bf16 units (`lscpu`'s model and flags)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []

    def field(name: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), "")

    flags = set(field("flags").split())
    units = [label for flag, label in BF16_UNITS if flag in flags]
    return f"{field('model name') or '?'}, {os.cpu_count()} cores, bf16: {', '.join(units) or 'none (fp32)'}"
