"""The `eval` section of params.yaml.

One sub-section per stage (extract, linear, lowlabel) so that dvc.yaml can make
each stage depend on exactly the knobs it reads: changing the fine-tune epochs
reruns `lowlabel` only, not the feature extraction.
"""

from typing import Literal

from pydantic import Field, field_validator

from sslflow.data.fractions import NAMES, FractionName
from sslflow.section import Section

Fraction = FractionName


class ExtractCfg(Section):
    """Frozen-feature extraction (`sslflow extract`)."""

    batch_size: int = Field(512, gt=0, description="images per forward pass")
    dtype: Literal["float32", "float16"] = Field(
        "float32", description="stored feature type (float16 halves ImageNet's files)"
    )
    head_layers: int = Field(
        0,
        ge=0,
        description="take features after this many projection-head layers (SimCLRv2: 1) where the head has more; "
        "0 = the backbone output",
    )


class LinearCfg(Section):
    """Multinomial logistic regression on standardised frozen features (`sslflow linear`, and lowlabel's probe)."""

    backend: Literal["auto", "torch", "sklearn"] = Field(
        "auto", description="auto: scikit-learn for small CPU sets, torch full-batch L-BFGS otherwise"
    )
    sklearn_max_rows: int = Field(20000, gt=0, description="auto picks scikit-learn up to this many train rows on CPU")
    l2_grid: list[float] = Field(
        [1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
        min_length=1,
        description="L2 strengths tried (penalty l2/2 |W|^2 on the mean loss)",
    )
    holdout: float = Field(0.1, gt=0, lt=1, description="share of train held out to choose the L2 strength (never val)")
    max_iter: int = Field(100, gt=0, description="L-BFGS iterations per fit")
    tol: float = Field(1e-5, gt=0, description="L-BFGS gradient tolerance")
    chunk_rows: int = Field(65536, gt=0, description="torch: rows per loss chunk (bounds the per-chunk memory)")
    resident_mb: float = Field(
        2048,
        ge=0,
        description="torch: standardised float32 rows kept resident up to this size; above it they are "
        "rebuilt a chunk at a time from the mapped features on each pass (memory flat in the rows)",
    )

    @field_validator("l2_grid")
    @classmethod
    def _positive(cls, grid: list[float]) -> list[float]:
        if any(v <= 0 for v in grid):
            raise ValueError("every L2 strength must be > 0")
        return grid


def _known_methods(methods):
    """Method names as sslflow.methods declares them: a misspelt one would silently run nothing."""
    from sslflow.methods.registry import names

    unknown = sorted(set(methods or ()) - set(names()))
    if unknown:
        raise ValueError(f"unknown method {', '.join(unknown)} (known: {', '.join(names())})")
    return methods


class FinetuneCfg(Section):
    """Fine-tuning the whole encoder on a labelled subset with crop + flip only (SimCLR appendix B.5).

    The class defaults are SimCLR's settings; params.yaml's CPU profile fine-tunes
    fewer epochs and only the methods of the lecture's semi-supervised table.
    """

    enabled: bool = True
    epochs: dict[Fraction, int] = Field(
        dict(zip(NAMES, (60, 30), strict=True)), description="epochs over the subset, per fraction (SimCLR's)"
    )
    batch_size: int = Field(64, gt=0, description="capped at the subset's size")
    eval_batch_size: int = Field(512, gt=0, description="images per forward pass when scoring val")
    lr: float = Field(0.05, gt=0, description="Nesterov SGD learning rate per 256 images (SimCLR: 0.05 x B/256)")
    method_lr: dict[str, float] = Field(
        {},
        description="method -> its own learning rate per 256 images in place of lr: a network fine-tuned "
        "from a projection-head layer may want another rate than one fine-tuned from its backbone",
    )
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, description="SimCLR fine-tunes without regularisation")
    head_layers: Literal["auto"] | int = Field(
        "auto",
        description="projection-head layers kept below the classifier; auto = 1 for a 3-layer head (SimCLRv2), else 0",
    )
    methods: list[str] | None = Field(
        None, description="the methods fine-tuned (random_init: the supervised baseline); null = every one with weights"
    )
    head_layer_ablation: dict[str, list[int]] = Field(
        {},
        description="method -> head layers it is also fine-tuned from, each scored beside the head_layers run "
        "(SimCLRv2's ablation: {simclr_v2: [0, 1]})",
    )

    @field_validator("epochs")
    @classmethod
    def _epochs_positive(cls, epochs: dict[str, int]) -> dict[str, int]:
        if any(v <= 0 for v in epochs.values()):
            raise ValueError("epochs must be > 0")
        return epochs

    @field_validator("head_layer_ablation")
    @classmethod
    def _layers_non_negative(cls, ablation: dict[str, list[int]]) -> dict[str, list[int]]:
        _known_methods(ablation)
        if any(n < 0 for layers in ablation.values() for n in layers):
            raise ValueError("head layers must be >= 0")
        return ablation

    @field_validator("method_lr")
    @classmethod
    def _rates_positive(cls, rates: dict[str, float]) -> dict[str, float]:
        _known_methods(rates)
        if any(lr <= 0 for lr in rates.values()):
            raise ValueError("learning rates must be > 0")
        return rates

    def lr_for(self, method: str) -> float:
        """The learning rate per 256 images that fine-tunes this method."""
        return self.method_lr.get(method, self.lr)

    _methods_known = field_validator("methods")(_known_methods)

    @field_validator("head_layers")
    @classmethod
    def _head_layers_non_negative(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 'auto' or >= 0")
        return value


class DistillCfg(Section):
    """SimCLRv2 self-distillation: the fine-tuned teacher's soft labels on all train images teach a student."""

    enabled: bool = False
    temperature: float = Field(1.0, gt=0, description="softmax temperature of teacher and student")
    epochs: int = Field(1, gt=0, description="epochs over all train images")
    max_steps: int | None = Field(
        None, gt=0, description="stop (and end the cosine) after this many steps; null = the epochs"
    )
    batch_size: int = Field(128, gt=0)
    lr: float = Field(0.05, gt=0, description="Nesterov SGD learning rate per 256 images")
    methods: list[str] | None = Field(None, description="the fine-tuned methods distilled; null = every one")

    _methods_known = field_validator("methods")(_known_methods)


class LowLabelCfg(Section):
    """The 1% / 10% protocol (`sslflow lowlabel`): linear probe, fine-tune, optional distillation."""

    fractions: list[Fraction] = Field(list(NAMES), min_length=1)
    finetune: FinetuneCfg = FinetuneCfg()
    distill: DistillCfg = DistillCfg()

    @field_validator("fractions")
    @classmethod
    def _unique(cls, fractions: list[str]) -> list[str]:
        if len(set(fractions)) != len(fractions):
            raise ValueError("fractions must not repeat")
        return fractions


class EvalCfg(Section):
    split: Literal["val", "test"] = Field(
        "test",
        description="test: score on the source's evaluation split (the final tables); val: on the validation slice "
        "held out of train, which then leaves every training step (tuning; sslflow/eval/split.py)",
    )
    extract: ExtractCfg = ExtractCfg()
    linear: LinearCfg = LinearCfg()
    lowlabel: LowLabelCfg = LowLabelCfg()
