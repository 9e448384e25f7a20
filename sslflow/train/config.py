"""The `train` (the shared loop) and `pretrain` (the methods) sections of params.yaml.

Each method's section may override the loop's schedule keys (epochs,
max_steps, batch_size, optimizer, lr, weight_decay, warmup_epochs): the methods share one
loop but not one budget. dvc.yaml makes each pretrain stage depend on
`pretrain.<method>`, so every method has a section, even an empty one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from sslflow.section import Section

Optimizer = Literal["lars", "sgd", "adamw"]
MethodName = Literal["simclr", "simclr_v2", "rotation", "relpos", "exemplar", "supervised", "random_init", "raw_pixels"]
CONTROLS = ("random_init", "raw_pixels")  # nothing to train


class KnnCfg(Section):
    """The kNN monitor: weighted k-NN (cosine) of a labelled train sample against the first val images."""

    k: int = Field(20, gt=0)
    temperature: float = Field(0.07, gt=0, description="neighbour weight exp(sim / t)")
    train_subset: Literal["1pct", "10pct"] = Field("1pct", description="the labelled memory bank")
    val_samples: int = Field(1000, gt=0, description="val images classified (the first ones in shard order)")
    every_epochs: int = Field(1, ge=0, description="0 = only at the end")


class TrainCfg(Section):
    epochs: int = Field(1, gt=0)
    max_steps: int | None = Field(
        None, gt=0, description="stop (and end the schedule) here; null = epochs x batches per epoch"
    )
    batch_size: int = Field(256, gt=0, description="global batch (images) across all ranks")
    optimizer: Optimizer = "lars"
    lr: float = Field(0.3, gt=0, description="base learning rate per 256 images (see lr_scaling)")
    lr_scaling: Literal["linear", "sqrt", "none"] = Field(
        "linear", description="lr x B/256, lr x sqrt(B/256), or lr as given"
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="LARS/SGD momentum")
    weight_decay: float = Field(1e-6, ge=0, description="not applied to biases and BN parameters")
    warmup_epochs: float = Field(0.0, ge=0)
    checkpoint_every: int = Field(200, gt=0, description="steps between checkpoints (and one at the end)")
    log_every: int = Field(10, gt=0, description="steps between logged metrics")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast on GPU, fp32 on CPU")
    channels_last: bool = True
    compile: bool = False
    threads: int = Field(0, ge=0, description="torch CPU threads per process; 0 = torch's default")
    knn: KnnCfg = KnnCfg()


class Overrides(Section):
    """Per-method replacements of `train` keys (null = use train's)."""

    epochs: int | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    optimizer: Optimizer | None = None
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    warmup_epochs: float | None = Field(None, ge=0)


class SimCLRCfg(Overrides):
    temperature: float = Field(0.5, gt=0)
    proj_dim: int = Field(128, gt=0, description="output of the projection head")
    proj_hidden: int = Field(0, ge=0, description="hidden width; 0 = the backbone's feature width")
    proj_layers: int = Field(2, ge=1, le=4, description="2 = SimCLR v1, 3 = SimCLRv2")
    queue_size: int = Field(0, ge=0, description="SimCLRv2 memory bank: negatives kept from earlier steps; 0 = off")
    momentum: float = Field(0.99, ge=0, lt=1, description="EMA of the momentum encoder (with a queue)")


class SimCLRv2Cfg(SimCLRCfg):
    proj_layers: int = Field(3, ge=1, le=4)


class RotationCfg(Overrides):
    hidden: int = Field(0, ge=0, description="hidden width of the 4-way head; 0 = linear")


class RelPosCfg(Overrides):
    hidden: int = Field(512, gt=0, description="hidden width of the late-fusion MLP")


class ExemplarCfg(Overrides):
    pass


class SupervisedCfg(Overrides):
    pass


class ControlCfg(Section):
    """random_init / raw_pixels train nothing; the section exists for dvc's per-method params."""


class PretrainCfg(Section):
    methods: list[MethodName] = ["simclr", "rotation", "relpos", "exemplar", "supervised", "random_init", "raw_pixels"]
    simclr: SimCLRCfg = SimCLRCfg()
    simclr_v2: SimCLRv2Cfg = SimCLRv2Cfg()
    rotation: RotationCfg = RotationCfg()
    relpos: RelPosCfg = RelPosCfg()
    exemplar: ExemplarCfg = ExemplarCfg()
    supervised: SupervisedCfg = SupervisedCfg()
    random_init: ControlCfg = ControlCfg()
    raw_pixels: ControlCfg = ControlCfg()

    @field_validator("methods")
    @classmethod
    def _unique(cls, methods: list[str]) -> list[str]:
        duplicates = sorted({m for m in methods if methods.count(m) > 1})
        if duplicates:
            raise ValueError(f"listed twice: {', '.join(duplicates)}")
        return methods


def method_train_cfg(train: TrainCfg, pretrain: PretrainCfg, method: str) -> TrainCfg:
    """The loop's settings for one method: `train` with the method's non-null overrides applied."""
    section = getattr(pretrain, method)
    fields = Overrides.model_fields if isinstance(section, Overrides) else {}
    updates = {name: getattr(section, name) for name in fields if getattr(section, name) is not None}
    return train.model_copy(update=updates)
