"""The `data` section of params.yaml."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from sslflow.section import PathField, Section


class SubsetsCfg(Section):
    """Label subsets for the low-label protocol (1% and 10%, nested)."""

    seed: int = 0
    # ILSVRC2012: the published SimCLR lists (one file name per line) instead of sampling.
    files: dict[Literal["1pct", "10pct"], PathField] | None = None


class DataCfg(Section):
    source: PathField = Path("/usr/share/datasets/fashion-mnist")
    layout: Literal["mnist-idx", "imagefolder", "imagenet"] = "mnist-idx"
    shard_size_mb: float = Field(256.0, gt=0)
    seed: int = 0
    on_bad_image: Literal["error", "skip"] = "error"
    workers: int = Field(0, ge=0, description="processes for sharding; 0 = all cores")
    subsets: SubsetsCfg = SubsetsCfg()
