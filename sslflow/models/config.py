"""The `model` section of params.yaml: which backbone every method trains."""

from typing import Literal

from pydantic import Field

from sslflow.section import Section


class ModelCfg(Section):
    arch: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    width: float = Field(1.0, gt=0, le=8, description="channel multiplier of every stage (0.5 = half as wide)")
    small_stem: bool = Field(True, description="3x3 conv, no max-pool: for 28-96 px inputs")
    stem_stride: Literal[1, 2] = Field(1, description="stride of the small stem's conv (2 = 4x fewer positions)")
    pool: int = Field(
        1,
        ge=1,
        le=4,
        description="side of the final average pool: 1 = global; 2 keeps a coarse 2x2 layout (x4 features)",
    )
    zero_init_residual: bool = Field(True, description="last BN of each block starts at 0 (Goyal et al.)")
