"""SimCLR's ablation figures from `dvc exp` runs: top-1 against batch size and training length (fig. 9),
projection dimension (fig. 8), temperature (table 5), and the augmentation-pair heatmap (fig. 5).

`dvc exp show --json` gives every experiment's params and metrics; `parse_exp_show`
turns that into `Experiment`s, and the rest works on those, so it can be fed
rows directly. Nothing is dropped in silence: `gather_experiments` says why no
experiment could be read, and `experiments_line` puts that (or how many runs
carry no metrics) in a line the report shows. An experiment enters a figure only when it differs from the
baseline commit in that figure's params and nothing else: a run that changed
both the batch size and the temperature belongs to neither sweep.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sslflow.report.plots import save  # noqa: E402

SIMCLR_OPS = "augment.simclr.ops"
OP_NAMES = {
    "random_resized_crop": "Crop",
    "flip": "Flip",
    "color_jitter": "Colour jitter",
    "grayscale": "Grey",
    "gaussian_blur": "Blur",
    "rotate": "Rotate",
    "cutout": "Cutout",
    "gaussian_noise": "Noise",
    "sobel": "Sobel",
}


@dataclass(frozen=True)
class Experiment:
    name: str
    baseline: bool
    params: dict[str, Any]  # dotted key -> value (lists kept whole)
    metrics: dict[str, dict]  # metrics file -> its contents


@dataclass(frozen=True)
class ExperimentsRead:
    """What `dvc exp show` gave: the experiments, or why there are none."""

    experiments: list[Experiment]
    problem: str | None = None  # one line: why they could not be read


@dataclass(frozen=True)
class AblationFigure:
    caption: str
    file: str  # name in the figures' folder
    x_name: str
    line_name: str
    points: list[tuple[Any, Any, float]]  # (line, x, top-1): what the figure plots


def _rows(data: dict[Any, list[tuple[float, float]]]) -> list[tuple[Any, Any, float]]:
    return [(group, x, top1) for group, points in sorted(data.items(), key=lambda kv: str(kv[0])) for x, top1 in points]


# ----------------------------------------------------------------------------- reading


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 1}} -> {"train.epochs": 1}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _experiment(entry: dict, name: str, baseline: bool) -> Experiment | None:
    data = entry.get("data") or {}
    if entry.get("error") or not data:
        return None
    params: dict[str, Any] = {}
    for content in (data.get("params") or {}).values():
        params.update(flatten(content.get("data") or {}))
    metrics = {path: content.get("data") or {} for path, content in (data.get("metrics") or {}).items()}
    return Experiment(name=name, baseline=baseline, params=params, metrics=metrics)


def parse_exp_show(rows: list[dict]) -> list[Experiment]:
    """Baseline commits and their experiments from `dvc exp show --json`. The workspace row stands in
    for the checked-out commit's metrics when that commit carries none: a fresh clone's `make run`
    leaves its results uncommitted, and they are what `make ablate`'s experiments changed one knob of."""
    experiments = []
    workspace = next((_experiment(e, "workspace", True) for e in rows if e.get("rev") == "workspace"), None)
    for entry in rows:
        if entry.get("rev") == "workspace":
            continue
        base = _experiment(entry, entry.get("name") or entry.get("rev", "")[:7], baseline=True)
        if base is not None and workspace is not None and not any(base.metrics.values()):
            base = Experiment(base.name, True, workspace.params, workspace.metrics)
        workspace = None  # only the commit the workspace stands on
        if base is not None:
            experiments.append(base)
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                found = _experiment(rev, rev.get("name") or exp.get("name") or rev.get("rev", "")[:7], baseline=False)
                if found is not None:
                    experiments.append(found)
    return experiments


def gather_experiments(repo: Path | str = ".", timeout: float = 300) -> ExperimentsRead:
    """`dvc exp show --json` in `repo`; when it cannot be read, no experiments and the reason."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "show", "--json"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return ExperimentsRead([], f"`dvc exp show` did not answer in {timeout:g} s")
    except OSError as exc:
        return ExperimentsRead([], f"`dvc exp show` could not run: {exc}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return ExperimentsRead([], f"`dvc exp show` failed: {last}")
    try:
        return ExperimentsRead(parse_exp_show(json.loads(done.stdout or "[]")))
    except (json.JSONDecodeError, AttributeError, TypeError) as exc:
        return ExperimentsRead([], f"`dvc exp show --json` gave output this version cannot read ({exc})")


def experiments_line(read: ExperimentsRead, drawn: int, method: str = "simclr") -> str:
    """The report's one line on ablations: what was read, what could not be, what to run for more."""
    if read.problem:
        return f"No ablation figure: {read.problem}."
    runs = [e for e in read.experiments if not e.baseline]
    if not runs:
        return (
            "No `dvc exp` runs yet: `make ablate` (or `sslflow flow sweep --grid KEY=V1,V2`) runs a sweep "
            "and draws its figures here."
        )
    blind = [e.name for e in runs if linear_top1(e, method) is None]
    line = f"{len(runs)} experiment(s) read, {drawn} figure(s) drawn."
    if blind:
        line += (
            f" {len(blind)} carry no {method} linear top-1 (`dvc exp show` prints `!`): "
            + ", ".join(blind[:5])
            + (" ..." if len(blind) > 5 else "")
            + "."
        )
    return line


# ----------------------------------------------------------------------------- selecting


def linear_top1(exp: Experiment, method: str) -> float | None:
    return (exp.metrics.get(f"metrics/{method}/linear.json") or {}).get("top1")


def schedule(exp: Experiment, method: str, key: str):
    """A loop setting as the method trains with it: its own override, else train's."""
    own = exp.params.get(f"pretrain.{method}.{key}")
    return own if own is not None else exp.params.get(f"train.{key}")


LENGTH_KEYS = ("budget_views", "epochs", "max_steps")


def run_length(exp: Experiment, method: str) -> str | None:
    """What set the method's training length, as a line label: "102,400 views" under a budget, else
    "N epochs" (sslflow.schedule.method_train_cfg's rule: a method's own length replaces the shared one)."""
    own = {k: exp.params.get(f"pretrain.{method}.{k}") for k in LENGTH_KEYS}
    level = own if any(v is not None for v in own.values()) else {k: exp.params.get(f"train.{k}") for k in LENGTH_KEYS}
    if level.get("budget_views") is not None:
        return f"{int(level['budget_views']):,} views"
    if level.get("epochs") is not None:
        epochs = level["epochs"]
        return f"{epochs:g} epoch" + ("" if epochs == 1 else "s")
    return None


def sweep(experiments: list[Experiment], keys: set[str]) -> list[Experiment]:
    """The baseline and the experiments that differ from it only in `keys` (empty without a baseline)."""
    base = next((e for e in experiments if e.baseline), None)
    if base is None:
        return []
    chosen = [base]
    for exp in experiments:
        if exp.baseline:
            continue
        changed = {k for k in set(base.params) | set(exp.params) if base.params.get(k) != exp.params.get(k)}
        if changed and changed <= keys:
            chosen.append(exp)
    return chosen


def series(
    experiments: list[Experiment], method: str, x: Callable[[Experiment], Any], group: Callable[[Experiment], Any]
) -> dict[Any, list[tuple[float, float]]]:
    """{group value: [(x, top-1), ...] sorted by x}, duplicates of one point averaged, points without a metric dropped."""
    points: dict[Any, dict[float, list[float]]] = {}
    for exp in experiments:
        top1, xv = linear_top1(exp, method), x(exp)
        if top1 is None or xv is None:
            continue
        points.setdefault(group(exp), {}).setdefault(float(xv), []).append(top1)
    return {g: sorted((xv, sum(v) / len(v)) for xv, v in pts.items()) for g, pts in points.items()}


def augmentation_pairs(experiments: list[Experiment], method: str) -> dict[tuple[str, str], float]:
    """{(first op, second op): top-1} for views of one or two ops (one op sits on the diagonal)."""
    cells: dict[tuple[str, str], float] = {}
    for exp in sweep(experiments, {SIMCLR_OPS}):
        ops = exp.params.get(SIMCLR_OPS)
        top1 = linear_top1(exp, method)
        if top1 is None or not isinstance(ops, list) or not 1 <= len(ops) <= 2:
            continue
        names = [op.get("op", "?") if isinstance(op, dict) else str(op) for op in ops]
        cells[(names[0], names[-1])] = top1
    return cells


# ----------------------------------------------------------------------------- drawing


def _line_figure(data: dict, dest: Path, *, title: str, xlabel: str, legend: str, log2: bool) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for group, points in sorted(data.items(), key=lambda kv: str(kv[0])):
        xs, ys = zip(*points)
        ax.plot(xs, [100 * y for y in ys], "o-", label=f"{legend} {group}")
    if log2:
        ax.set_xscale("log", base=2)
        ticks = sorted({x for points in data.values() for x, _ in points})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("linear top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, dest)


def _heatmap(cells: dict[tuple[str, str], float], dest: Path, title: str) -> None:
    names = sorted({a for a, _ in cells} | {b for _, b in cells})
    grid = [[cells.get((a, b), math.nan) * 100 for b in names] for a in names]
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.5, 1.0 * len(names) + 1.8))
    image = ax.imshow(grid, cmap="viridis")
    labels = [OP_NAMES.get(n, n) for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), labels)
    ax.set_xlabel("2nd transformation")
    ax.set_ylabel("1st transformation")
    finite = [v for row in grid for v in row if not math.isnan(v)]
    middle = (min(finite) + max(finite)) / 2
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if not math.isnan(value):
                colour = "black" if value > middle else "white"  # viridis is light at the top
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=ax, label="linear top-1 (%)")
    ax.set_title(title)
    fig.tight_layout()
    save(fig, dest)


def ablation_figures(experiments: list[Experiment], dest_dir: Path, method: str = "simclr") -> list[AblationFigure]:
    """Draw every ablation the experiments hold; return each figure drawn with the points it plots."""
    drawn: list[AblationFigure] = []
    scheduling = {f"{p}.{k}" for p in ("train", f"pretrain.{method}") for k in ("batch_size", *LENGTH_KEYS)}
    batch = series(
        sweep(experiments, scheduling),
        method,
        lambda e: schedule(e, method, "batch_size"),
        lambda e: run_length(e, method),
    )
    if _spans(batch):
        _line_figure(
            batch,
            dest_dir / "ablation_batch_size.png",
            title="Batch size and training length",
            xlabel="batch size",
            legend="length",
            log2=True,
        )
        drawn.append(
            AblationFigure(
                "Linear top-1 against batch size, one line per training length (views, or epochs)",
                "ablation_batch_size.png",
                "batch size",
                "length",
                _rows(batch),
            )
        )
    head_keys = {f"pretrain.{method}.proj_dim", f"pretrain.{method}.proj_layers"}
    head = series(
        sweep(experiments, head_keys),
        method,
        lambda e: e.params.get(f"pretrain.{method}.proj_dim"),
        lambda e: e.params.get(f"pretrain.{method}.proj_layers"),
    )
    if _spans(head):
        _line_figure(
            head,
            dest_dir / "ablation_proj_dim.png",
            title="Projection output dimension",
            xlabel="projection dim",
            legend="head layers",
            log2=True,
        )
        drawn.append(
            AblationFigure(
                "Linear top-1 against the projection head's output dimension",
                "ablation_proj_dim.png",
                "projection dim",
                "head layers",
                _rows(head),
            )
        )
    temperature = series(
        sweep(experiments, {f"pretrain.{method}.temperature"}),
        method,
        lambda e: e.params.get(f"pretrain.{method}.temperature"),
        lambda e: "NT-Xent",
    )
    if _spans(temperature):
        _line_figure(
            temperature,
            dest_dir / "ablation_temperature.png",
            title="NT-Xent temperature",
            xlabel="temperature",
            legend="loss",
            log2=True,
        )
        drawn.append(
            AblationFigure(
                "Linear top-1 against the NT-Xent temperature",
                "ablation_temperature.png",
                "temperature",
                "loss",
                _rows(temperature),
            )
        )
    pairs = augmentation_pairs(experiments, method)
    if len(pairs) >= 2:
        _heatmap(pairs, dest_dir / "ablation_augment_pairs.png", "Augmentation pairs")
        drawn.append(
            AblationFigure(
                "Linear top-1 for views made of one or two transformations",
                "ablation_augment_pairs.png",
                "2nd transformation",
                "1st transformation",
                [(OP_NAMES.get(a, a), OP_NAMES.get(b, b), top1) for (a, b), top1 in sorted(pairs.items())],
            )
        )
    return drawn


def _spans(data: dict) -> bool:
    """A figure needs two points at least, in one line or across lines."""
    return sum(len(points) for points in data.values()) >= 2


# ----------------------------------------------------------------------------- SimCLRv2's memory bank


def lowlabel_top1(exp: Experiment, method: str, fraction: str, classifier: str = "finetune") -> float | None:
    entry = (exp.metrics.get(f"metrics/{method}/lowlabel.json") or {}).get(fraction) or {}
    return entry.get(f"{classifier}_top1")


def memory_bank_table(experiments: list[Experiment], method: str = "simclr_v2") -> str:
    """SimCLRv2 with and without its memory bank (the lecture's "+~1%"): the baseline and the runs that
    changed only the queue size, as a table; empty until two queue sizes have been run."""
    key = f"pretrain.{method}.queue_size"
    runs: dict[int, Experiment] = {}
    for exp in sweep(experiments, {key}):
        size = exp.params.get(key)
        if isinstance(size, int) and linear_top1(exp, method) is not None:
            runs.setdefault(size, exp)
    if len(runs) < 2:
        return ""

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    lines = [
        "| Memory bank | Linear top 1 | Fine-tuned top 1, 1% | Fine-tuned top 1, 10% |",
        "|:--|--:|--:|--:|",
    ]
    for size, exp in sorted(runs.items()):
        bank = "none (in-batch negatives)" if size == 0 else f"{size:,} keys, momentum encoder"
        cells = [linear_top1(exp, method), lowlabel_top1(exp, method, "1pct"), lowlabel_top1(exp, method, "10pct")]
        lines.append(f"| {bank} | " + " | ".join(cell(v) for v in cells) + " |")
    return "\n".join(lines) + "\n"
