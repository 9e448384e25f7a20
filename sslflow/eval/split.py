"""Which images each step reads under `eval.split`: the final tables (test) or tuning (val).

test: every train image trains (pretraining, probes, fine-tuning, distillation)
and everything is scored on the source's evaluation split, `data/shards/val`
(Fashion-MNIST's test set, ImageNet's val).

val: the validation slice that `sslflow shard` holds out of train
(`data/shards/subsets/val.txt`, class-balanced and seeded, apart from the label
subsets) is scored instead, and leaves train for every step. Nothing reads
`data/shards/val`, so a setting chosen on these numbers has never seen the test
set: `dvc exp run -S eval.split=val ...` is how a method is tuned, and the test
split is read once, for the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sslflow import paths


@dataclass(frozen=True)
class EvalSplit:
    name: str  # "val" or "test"
    held_out: frozenset[str]  # the validation slice's keys under val, else empty

    @property
    def train_exclude(self) -> frozenset[str] | None:
        """Train keys no step may learn from (None: all of train trains)."""
        return self.held_out if self.name == "val" else None

    @property
    def scored(self) -> dict:
        """make_loader arguments of the images the classifiers are scored on."""
        if self.name == "val":
            return {"split": "train", "keys": self.held_out}
        return {"split": "val", "keys": None}

    @property
    def shard_splits(self) -> tuple[str, ...]:
        """The shard splits the protocol reads (under val, the scored images are train's)."""
        return ("train",) if self.name == "val" else ("train", "val")

    def describe(self) -> str:
        if self.name == "val":
            return f"the validation slice ({len(self.held_out):,} train images held out; eval.split: val)"
        return "the test split (data/shards/val; eval.split: test)"


def eval_split(params, shards_dir: Path | str = paths.SHARDS) -> EvalSplit:
    """The protocol's split; under val, the slice's keys from the shards' subsets/val.txt."""
    from sslflow.data.read import read_subset
    from sslflow.data.subsets import VAL

    name = params.eval.split
    held_out = frozenset(read_subset(VAL, shards_dir)) if name == "val" else frozenset()
    return EvalSplit(name, held_out)
