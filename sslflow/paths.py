"""Where each stage's outputs live, relative to the project root (the directory dvc runs in).

One place for these names: dvc.yaml, the stages, the flows and the tests agree through it.
"""

from pathlib import Path

SHARDS = Path("data/shards")
FEATURES = Path("data/features")
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")
EXPORTS = Path("exports")


def shard_dir(split: str) -> Path:
    return SHARDS / split


def manifest() -> Path:
    return SHARDS / "manifest.json"


def subset(name: str) -> Path:
    """name: '1pct' or '10pct'."""
    return SHARDS / "subsets" / f"{name}.txt"


def encoder(method: str) -> Path:
    return MODELS / method / "encoder.pt"


def export(method: str) -> Path:
    """The folder `sslflow export` writes for a method: what leaves the project (sslflow/portable/files.py)."""
    return EXPORTS / method


def checkpoint(method: str) -> Path:
    return MODELS / method / "last.pt"


def features(method: str, split: str) -> Path:
    return FEATURES / method / f"{split}.npz"


def metrics(method: str, stage: str) -> Path:
    """stage: 'pretrain', 'linear' or 'lowlabel'."""
    return METRICS / method / f"{stage}.json"
