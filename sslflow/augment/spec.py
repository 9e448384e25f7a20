"""The `augment` section of params.yaml: the view spec both backends run."""

from typing import Literal

from pydantic import Field

from sslflow.section import Section


class AugmentCfg(Section):
    backend: Literal["auto", "dali", "torchvision"] = "auto"
    size: int = Field(28, gt=0, description="output side in pixels")
    threads: int = Field(0, ge=0, description="DALI threads / DataLoader workers; 0 = all cores")
