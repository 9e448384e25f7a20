"""The `model` section of params.yaml."""

from typing import Literal

from pydantic import Field

from sslflow.section import Section


class ModelCfg(Section):
    arch: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    width: float = Field(1.0, gt=0, description="channel multiplier of every stage")
    small_stem: bool = Field(True, description="3x3 stride-1 conv, no max-pool: for 28-96 px inputs")
