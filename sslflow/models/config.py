"""The `model` section of params.yaml: which backbone every method trains."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sslflow.section import Section

# arch -> (block kind, blocks per stage): He et al.'s table 1, as torchvision and SimCLR build them.
ARCHS: dict[str, tuple[Literal["basic", "bottleneck"], list[int]]] = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
}


class ModelCfg(Section):
    arch: Literal[tuple(ARCHS)] = "resnet18"  # type: ignore[valid-type]
    width: float = Field(
        1.0, gt=0, le=8, description="channel multiplier of every stage (0.5 = half as wide; SimCLR's 2x, 4x)"
    )
    sk: bool = Field(
        False,
        description="selective-kernel 3x3 convs + ResNet-D stem/shortcuts, as SimCLRv2's ResNet-152 (3x+SK); "
        "bottleneck archs only",
    )
    small_stem: bool = Field(True, description="3x3 conv, no max-pool: for 28-96 px inputs")
    stem_stride: Literal[1, 2] = Field(1, description="stride of the small stem's conv (2 = 4x fewer positions)")
    pool: int = Field(
        1,
        ge=1,
        le=4,
        description="side of the final average pool: 1 = global; 2 keeps a coarse 2x2 layout (x4 features)",
    )
    zero_init_residual: bool = Field(True, description="last BN of each block starts at 0 (Goyal et al.)")

    @model_validator(mode="after")
    def _sk_needs_bottlenecks(self) -> ModelCfg:
        if self.sk and ARCHS[self.arch][0] != "bottleneck":
            bottlenecks = ", ".join(a for a, (kind, _) in ARCHS.items() if kind == "bottleneck")
            raise ValueError(f"model.sk needs a bottleneck arch ({bottlenecks}), not {self.arch}")
        return self
