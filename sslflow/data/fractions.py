"""The label fractions of the low-label protocol (SimCLR's 1% and 10%): their names, sizes and summary keys.

Subset files, params keys, metrics and report columns all spell a fraction
the way this module does.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal, get_args

FractionName = Literal["1pct", "10pct"]
NAMES: tuple[str, ...] = get_args(FractionName)
FRACTIONS: dict[str, Fraction] = {name: Fraction(int(name.removesuffix("pct")), 100) for name in NAMES}


def summary_key(name: str, classifier: str = "linear") -> str:
    """The reports/summary.json key of a fraction's top-1: 'pct1_top1' (linear probe), 'pct10_finetune_top1'."""
    prefix = "pct" + name.removesuffix("pct")
    return f"{prefix}_top1" if classifier == "linear" else f"{prefix}_{classifier}_top1"
