"""What a method module declares, so that the registry can find it and nothing else changes to add one.

A method module under ``sslflow/methods/`` (or a file in a folder named by
``SSLFLOW_METHODS_PATH``) sets ``METHODS = (MethodSpec(...), ...)``: the name
used on the command line and in params.yaml (``pretrain.<name>``), the pydantic
section of its params, its label in the report tables, the view maker it trains
on, and how it is built. This module imports no torch, so params validation
and the report only pay for what they use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sslflow.section import Section


@dataclass(frozen=True)
class MethodSpec:
    """One method (or control) as the rest of the pipeline sees it.

    views: the loader kind it trains on (sslflow.augment.loader), None when it
    trains nothing. build: BuildContext -> Method, for methods that train;
    encoder: (params, in_channels) -> nn.Module, for controls that train
    nothing (the encoder is saved as is). control: a row of the tables'
    Controls group rather than of the self-supervised methods.
    """

    name: str
    label: str
    section: type[Section]
    views: str | None = None
    build: Callable[[BuildContext], Any] | None = None
    encoder: Callable[[Any, int], Any] | None = None
    control: bool = False

    def __post_init__(self) -> None:
        if (self.build is None) == (self.encoder is None):
            raise ValueError(f"method {self.name}: give build (a trained method) or encoder (a control), not both")
        if self.build is not None and not self.views:
            raise ValueError(f"method {self.name}: a trained method names the views it trains on")

    @property
    def trains(self) -> bool:
        return self.build is not None


@dataclass
class BuildContext:
    """What a method's build function gets: a fresh backbone, its params section, the whole params.

    total_steps (the length of the run, for schedules such as BYOL's target
    momentum) is read from the manifest only when a method asks for it.
    """

    name: str
    params: Any
    backbone: Any
    num_classes: int
    steps: Callable[[], int] = field(repr=False, default=lambda: 0)

    @property
    def section(self) -> Section:
        return getattr(self.params.pretrain, self.name)

    @property
    def out_dim(self) -> int:
        return self.backbone.out_dim

    @cached_property
    def total_steps(self) -> int:
        return self.steps()
