"""The `train` (shared loop) and `pretrain` (methods) sections of params.yaml."""

from typing import Literal

from pydantic import Field

from sslflow.section import Section


class TrainCfg(Section):
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(256, gt=0, description="global batch (images) across all ranks")
    optimizer: Literal["lars", "sgd", "adamw"] = "lars"
    lr: float = Field(0.3, gt=0, description="base learning rate per 256 images")
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"
    weight_decay: float = Field(1e-6, ge=0)
    warmup_epochs: float = Field(0.0, ge=0)
    checkpoint_every: int = Field(200, gt=0, description="steps between checkpoints")


MethodName = Literal[
    "simclr", "simclr_v2", "rotation", "relpos", "exemplar", "supervised", "random_init", "raw_pixels"
]


class PretrainCfg(Section):
    methods: list[MethodName] = ["simclr", "rotation", "relpos", "exemplar", "supervised", "random_init", "raw_pixels"]
