"""Reading each method's metrics files into one record, and the summary.json rows made from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sslflow import paths
from sslflow.data.fractions import NAMES as FRACTIONS
from sslflow.data.fractions import summary_key
from sslflow.errors import UserError


@dataclass(frozen=True)
class MethodResults:
    """What the stages wrote for one method; None where a file is absent (the stage did not run)."""

    method: str
    pretrain: dict | None
    linear: dict | None
    lowlabel: dict | None

    @property
    def backbone(self) -> str | None:
        return _first("backbone", self.pretrain, self.linear)

    @property
    def params_m(self) -> float | None:
        return _first("params_m", self.pretrain, self.linear)

    @property
    def views(self) -> int | None:
        """Views the backbone processed in pretraining (0 for a control that trains nothing)."""
        return _first("views", self.pretrain)

    @property
    def pretrain_s(self) -> float | None:
        return _first("wall_s", self.pretrain)

    @property
    def precision(self) -> str | None:
        """bf16 or fp32, as pretraining ran; None for a control or an older pretrain.json."""
        return _first("precision", self.pretrain)

    def linear_acc(self, k: int) -> float | None:
        return (self.linear or {}).get(f"top{k}")

    def lowlabel_acc(self, fraction: str, classifier: str, k: int) -> float | None:
        """classifier: 'linear', 'finetune' or 'distill'."""
        return self.lowlabel_value(f"{classifier}_top{k}", fraction)

    def lowlabel_value(self, key: str, fraction: str | None = None):
        """A key of one fraction's lowlabel.json entry; without a fraction, the first fraction that has it."""
        for name in FRACTIONS if fraction is None else (fraction,):
            value = ((self.lowlabel or {}).get(name) or {}).get(key)
            if value is not None:
                return value
        return None


def _first(key: str, *sources: dict | None):
    for source in sources:
        if source and source.get(key) is not None:
            return source[key]
    return None


def read_json(path: Path) -> dict | None:
    """A metrics file, or None when it does not exist; UserError naming it when it is not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def read_results(method: str, metrics_dir: Path | str = paths.METRICS) -> MethodResults:
    folder = Path(metrics_dir) / method
    return MethodResults(
        method=method,
        pretrain=read_json(folder / "pretrain.json"),
        linear=read_json(folder / "linear.json"),
        lowlabel=read_json(folder / "lowlabel.json"),
    )


def is_control(method: str) -> bool:
    """A row of the Controls group (supervised, random_init, raw_pixels), as its module declares."""
    from sslflow.methods.registry import specs

    spec = specs().get(method)
    return bool(spec and spec.control)


def ordered(methods: list[str]) -> list[str]:
    """Methods, then the controls, each in params order (as the tables print them)."""
    return [m for m in methods if not is_control(m)] + [m for m in methods if is_control(m)]


def summary_row(results: MethodResults) -> dict:
    """One row of reports/summary.json (INTERFACE.md).

    pct1_top1 / pct10_top1 are the linear probe on the subset, the number every
    method and control has; the fine-tuned and distilled ones are null where they did not run.
    budget_views and pretrain_s say what each method was given: the views its backbone
    processed in pretraining and the seconds that took.
    """
    return {
        "method": results.method,
        "backbone": results.backbone,
        "params_m": results.params_m,
        "linear_top1": results.linear_acc(1),
        "linear_top5": results.linear_acc(5),
        **{
            summary_key(fraction, classifier): results.lowlabel_acc(fraction, classifier, 1)
            for classifier in ("linear", "finetune", "distill")
            for fraction in FRACTIONS
        },
        "budget_views": results.views,
        "pretrain_s": results.pretrain_s,
    }
