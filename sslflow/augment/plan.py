"""Everything one epoch of one rank's loader is made from, computed once, backend-free.

Both backends read the same plan, so they agree on what a rank reads
(DALI's contiguous ``shard_id`` slice of the selection), on how many batches
an epoch has, and on the seed that fixes shuffling and augmentation.
`Plan.for_epoch` is the same selection at another epoch: only seeds and the
rank's slice change, nothing is read again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from sslflow.augment.catalogue import Catalogue, rank_range
from sslflow.augment.views import derive_seed
from sslflow.errors import UserError


@dataclass
class Plan:
    kind: str
    split: str
    batch_size: int
    rank: int
    world_size: int
    epoch: int
    skip_batches: int
    shuffle: bool
    drop_last: bool
    torch_device: torch.device
    shards_dir: Path
    channels: int
    mean: tuple[float, ...]  # per output channel, [0, 1] pixel range
    std: tuple[float, ...]
    threads: int
    seed: int  # for this (params.seed, epoch, rank, kind): the reader's shuffle and every random op
    epoch_seed: int  # for (params.seed, epoch, kind), shared by all ranks: the global order of indexed sources
    total: int  # samples in the selection, all ranks together
    slot: int  # which of the world_size slices this rank reads this epoch
    base_seed: int = 0  # params.seed, which the per-epoch seeds derive from
    catalogue: Catalogue | None = None  # set when samples are read by key
    positions: np.ndarray | None = None  # keyed selection (catalogue indices, shard order); None = whole split
    patches: np.ndarray | None = None  # exemplar: (N, p, p, C) uint8
    raw_shape: tuple[int, int, int] | None = None  # (H, W, C) of raw shards' pixels; None: JPEG/PNG to decode

    @property
    def rank_count(self) -> int:
        start, end = rank_range(self.total, self.slot, self.world_size)
        return end - start

    def for_epoch(self, epoch: int) -> Plan:
        """The same selection at `epoch`, from its first batch."""
        return replace(
            self,
            skip_batches=0,
            **epoch_fields(self.base_seed, epoch, self.rank, self.world_size, self.kind, self.shuffle),
        )

    @property
    def source_batches(self) -> int:
        """Batches the source itself yields in the epoch: every sample of this rank, the last batch padded.

        More than `num_batches` when drop_last leaves a partial batch (or a rank's longer slice) unread.
        """
        return math.ceil(self.rank_count / self.batch_size)

    @property
    def num_batches(self) -> int:
        """drop_last: the same count on every rank (DDP steps in lockstep); else every sample of this rank."""
        if self.drop_last:
            return (self.total // self.world_size) // self.batch_size
        return math.ceil(self.rank_count / self.batch_size)

    @property
    def gpu(self) -> int | None:
        """CUDA device index for DALI (None: CPU-only DALI)."""
        if self.torch_device.type != "cuda":
            return None
        return self.torch_device.index if self.torch_device.index is not None else torch.cuda.current_device()

    @property
    def indexed(self) -> bool:
        """Read by index (keyed subsets, exemplar copies) rather than as the whole split's shard stream."""
        return self.patches is not None or self.positions is not None

    @cached_property
    def order(self) -> np.ndarray | None:
        """Items this rank reads, in order, for sources addressed by index (keyed subsets, exemplar copies).

        The rank's slice of the selection, permuted by the plan's seed when shuffling.
        """
        if not self.indexed:
            return None
        items = np.arange(self.total) if self.patches is not None else self.positions
        start, end = rank_range(self.total, self.slot, self.world_size)
        if self.shuffle:
            # shuffle the whole selection first, so a rank's slice is a random subset each epoch
            items = items[np.random.default_rng(self.epoch_seed).permutation(len(items))]
        return items[start:end]


def epoch_fields(base_seed: int, epoch: int, rank: int, world_size: int, kind: str, shuffle: bool) -> dict:
    """The plan fields that change with the epoch."""
    return {
        "epoch": epoch,
        "seed": derive_seed(base_seed, epoch, rank, kind),
        "epoch_seed": derive_seed(base_seed, epoch, kind),
        "slot": slot_for(rank, world_size, epoch, shuffle),
    }


def slot_for(rank: int, world_size: int, epoch: int, shuffle: bool) -> int:
    """Rotate slices between ranks each epoch when shuffling, so no rank sees a fixed subset forever."""
    return (rank + epoch) % world_size if shuffle else rank


def check_request(kind: str, split: str, batch_size: int, rank: int, world_size: int, skip_batches: int) -> None:
    from sslflow.augment.views import KINDS

    if kind not in KINDS:
        raise UserError(f"loader kind {kind!r}: expected one of {', '.join(KINDS)}")
    if split not in ("train", "val"):
        raise UserError(f"loader split {split!r}: expected train or val")
    if batch_size <= 0:
        raise UserError(f"loader batch_size {batch_size}: must be > 0")
    if world_size <= 0 or not 0 <= rank < world_size:
        raise UserError(f"loader rank {rank} of world_size {world_size}: out of range")
    if skip_batches < 0:
        raise UserError(f"loader skip_batches {skip_batches}: must be >= 0")
