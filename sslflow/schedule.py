"""The `train` section of params.yaml (the shared loop), what every method's `pretrain.<method>` section may
override, and the steps a run takes: read by the loop (sslflow/train), by each method's section
(sslflow/methods) and by params.yaml's validation, so it sits below all of them.

Each method's section (declared beside the method, sslflow/methods/) may override the loop's schedule keys
(budget_views, epochs, max_steps, batch_size, optimizer, lr, weight_decay, warmup_epochs). Methods are
compared at one budget: `train.budget_views`, the views the backbone processes (images x the views each
method makes of an image), which gives every method the same work whatever its batch or view count, on
any machine. A method's own budget_views, epochs or max_steps replaces the shared budget (the report
shows each method's views and seconds). dvc.yaml makes each pretrain stage depend on
`pretrain.<method>`, so every method has a section, even an empty one.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from sslflow.data.fractions import NAMES, FractionName
from sslflow.section import Section

Optimizer = Literal["lars", "sgd", "adamw"]


class KnnCfg(Section):
    """The kNN monitor: weighted k-NN (cosine) of a labelled train sample against the first val images."""

    k: int = Field(20, gt=0)
    temperature: float = Field(0.07, gt=0, description="neighbour weight exp(sim / t)")
    train_subset: FractionName = Field(NAMES[0], description="the labelled memory bank")
    val_samples: int = Field(1000, gt=0, description="val images classified (the first ones in shard order)")
    points: int = Field(5, ge=0, description="evaluations spread evenly over the run, the last at its end; 0 = the end")


class Schedule(Section):
    """A run is as long as its budget of views, or else its epochs capped by max_steps: one, not both."""

    @model_validator(mode="after")
    def _one_length(self):
        if self.budget_views is not None and self.max_steps is not None:
            raise ValueError("budget_views and max_steps both set: give one (the budget sets the steps)")
        return self


class TrainCfg(Schedule):
    budget_views: int | None = Field(
        None,
        gt=0,
        description="views the backbone processes, all ranks (steps = ceil(budget / (batch x views per image))); "
        "the run's length, whatever epochs says; null = epochs, capped by max_steps",
    )
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
    grad_clip: float | None = Field(
        None, gt=0, description="clip the gradient's global norm to this before each update; null = no clipping"
    )
    checkpoint_every: int = Field(200, gt=0, description="steps between checkpoints (and one at the end)")
    log_every: int = Field(10, gt=0, description="steps between logged metrics")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast on GPUs and AMX CPUs, else fp32"
    )
    channels_last: bool = True
    compile: bool = False
    threads: int = Field(0, ge=0, description="torch CPU threads per process; 0 = torch's default")
    knn: KnnCfg = KnnCfg()


class Overrides(Schedule):
    """Per-method replacements of `train` keys (null = use train's)."""

    budget_views: int | None = Field(None, gt=0)
    budget_scale: float | None = Field(
        None,
        gt=0,
        description="train.budget_views times this (the supervised control's 2: the upper reference follows "
        "the shared budget); no effect when the length comes from epochs or max_steps",
    )
    epochs: int | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    optimizer: Optimizer | None = None
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    warmup_epochs: float | None = Field(None, ge=0)
    grad_clip: float | None = Field(None, gt=0)


LENGTH = ("budget_views", "epochs", "max_steps")


def method_train_cfg(train: TrainCfg, pretrain, method: str) -> TrainCfg:
    """The loop's settings for one method: `train` with the method's non-null overrides applied.

    A method that sets any of budget_views, epochs or max_steps sets its own length: the shared
    budget no longer applies to it (and a shared max_steps does not cap its budget).
    """
    section = getattr(pretrain, method)
    fields = set(TrainCfg.model_fields) & set(Overrides.model_fields) if isinstance(section, Overrides) else set()
    updates = {name: getattr(section, name) for name in fields if getattr(section, name) is not None}
    if updates.keys() & set(LENGTH):
        updates = {"budget_views": None, "max_steps": None, **updates}
    elif getattr(section, "budget_scale", None) and train.budget_views is not None:
        updates["budget_views"] = round(train.budget_views * section.budget_scale)
    return train.model_copy(update=updates)


def budget_steps(cfg: TrainCfg, views_per_image: int) -> int:
    """The steps of a run with a budget: ceil(views / (global batch x views an image))."""
    return math.ceil(cfg.budget_views / (cfg.batch_size * views_per_image))


def run_steps(cfg: TrainCfg, steps_per_epoch: int, views_per_image: int) -> int:
    """Optimizer steps of the run: the budget's, else epochs x steps_per_epoch capped by max_steps."""
    if cfg.budget_views is not None:
        return budget_steps(cfg, views_per_image)
    steps = steps_per_epoch * cfg.epochs
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def knn_steps(total_steps: int, points: int) -> frozenset[int]:
    """The steps the kNN monitor scores at: `points` spread evenly over the run, the last at its end (a curve
    with a shape at any run length: a one-epoch CPU run and a 200-epoch GPU one draw the same number)."""
    return frozenset({total_steps} | {max(1, round(total_steps * i / points)) for i in range(1, points)})
