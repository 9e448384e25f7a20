"""What each method's batch holds, independent of the backend that made it.

A view maker is named by `kind`; both backends return the same raw pieces per
kind (`OUTPUTS`) and `assemble` turns them into the contract's dict. The facts
that must agree between backends live here once: the relative-position label
table, the rotation order, the seeds, and the ASCII class-id parsing.
"""

from __future__ import annotations

import hashlib

import torch

KINDS = ("simclr", "rotation", "relpos", "exemplar", "supervised", "eval")

# What a backend hands over per kind, in order (tensors, except the eval keys).
OUTPUTS = {
    "simclr": ("view1", "view2", "label"),
    "rotation": ("rot0", "rot1", "rot2", "rot3", "label"),
    "relpos": ("center", "neighbour", "target"),
    "exemplar": ("image", "target"),
    "supervised": ("image", "label"),
    "eval": ("image", "label", "key"),
}

# Views the backbone processes per sample of a batch, the unit of `train.budget_views`: SimCLR's two
# augmentations, rotation's four, relative position's centre and neighbour patches.
VIEWS_PER_IMAGE = {"simclr": 2, "rotation": 4, "relpos": 2, "exemplar": 1, "supervised": 1}

# Doersch et al.'s label order: the 8 neighbours of the centre cell in reading order,
# as (row, column) offsets in cells. Label l is cell l of the 3x3 grid, skipping the centre.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def neighbour_cell(label: int) -> tuple[int, int]:
    """(row, column) of the neighbour cell in the 3x3 grid, 0..2 each."""
    dr, dc = NEIGHBOURS[label]
    return dr + 1, dc + 1


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from (params.seed, epoch, rank, kind, ...): the same on every machine and run."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def assemble(kind: str, parts: dict) -> dict:
    """Backend pieces -> the contract's batch dict."""
    if kind == "rotation":
        rots = [parts[f"rot{k}"] for k in range(4)]
        batch = rots[0].shape[0]
        target = torch.arange(4, dtype=torch.int64).repeat_interleave(batch).to(rots[0].device)
        return {"image": torch.cat(rots), "target": target}
    return {name: parts[name] for name in OUTPUTS[kind]}


def ascii_labels(padded: torch.Tensor) -> torch.Tensor:
    """(B, L) uint8 rows of ASCII digits padded with zero bytes (a `.cls` member) -> (B,) int64."""
    digits = padded.to(torch.int64)
    present = digits != 0
    value = torch.zeros(digits.shape[0], dtype=torch.int64, device=digits.device)
    for column in range(digits.shape[1]):
        value = torch.where(present[:, column], value * 10 + (digits[:, column] - 48), value)
    return value
