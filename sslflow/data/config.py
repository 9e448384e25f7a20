"""The `data` section of params.yaml: where the images are and how they become shards."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from sslflow.data.fractions import NAMES, FractionName
from sslflow.section import PathField, Section


class SubsetsCfg(Section):
    """Label subsets for the low-label protocol (1% and 10%, nested), and the validation slice held out of train."""

    seed: int = 0
    val_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="of each class's train images: the validation slice that `eval.split: val` scores on",
    )
    # ILSVRC2012: the published SimCLR lists (one file name per line) instead of sampling.
    files: dict[FractionName, PathField] | None = None

    @model_validator(mode="after")
    def _both_lists(self) -> "SubsetsCfg":
        # One list alone would leave the other to sampling, and the pair would no longer nest.
        if self.files is not None and set(self.files) != set(NAMES):
            raise ValueError(f"give both {' and '.join(NAMES)} lists, or null")
        return self


class DataCfg(Section):
    source: PathField = Path("/usr/share/datasets/fashion-mnist")
    layout: Literal["mnist-idx", "imagefolder", "imagenet"] = "mnist-idx"
    shard_size_mb: float = Field(256.0, gt=0)
    seed: int = 0
    on_bad_image: Literal["error", "skip"] = "error"
    workers: int = Field(0, ge=0, description="processes for sharding; 0 = all cores")
    # mnist-idx files carry no class names; null names the classes "0".."N-1".
    class_names: list[str] | None = None
    # imagenet with a flat val/: LOC_val_solution.csv; null looks in the source and in val/.
    val_labels: PathField | None = None
    subsets: SubsetsCfg = SubsetsCfg()

    @model_validator(mode="after")
    def _layout_options(self) -> "DataCfg":
        if self.class_names is not None and self.layout != "mnist-idx":
            raise ValueError("class_names is for the mnist-idx layout only (folder names name the classes)")
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class_names has duplicates")
        if self.val_labels is not None and self.layout != "imagenet":
            raise ValueError("val_labels is for the imagenet layout only")
        if self.subsets.files is not None and self.layout != "imagenet":
            raise ValueError("subsets.files is for the imagenet layout only")
        return self
