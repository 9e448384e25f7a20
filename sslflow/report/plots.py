"""Figures of the report (PNG, matplotlib's Agg backend) and the data files `dvc plots show` renders.

Training curves come from the dvclive folders the pretrain stage writes
(dvclive/<method>/plots/metrics/<group>/<name>.tsv, columns step and the
metric); a method without them (a control, or a run without dvclive) is skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sslflow.atomic import atomic_file, atomic_path  # noqa: E402
from sslflow.data.fractions import NAMES as FRACTIONS  # noqa: E402
from sslflow.data.fractions import summary_key  # noqa: E402
from sslflow.report.collect import MethodResults  # noqa: E402
from sslflow.report.tables import display_name  # noqa: E402

LIVE_DIR = Path("dvclive")
LOSS = Path("plots/metrics/train/loss.tsv")
KNN = Path("plots/metrics/knn/top1.tsv")


def read_curve(path: Path) -> tuple[list[float], list[float]] | None:
    """(steps, values) of one dvclive .tsv, or None when absent, empty or malformed."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except FileNotFoundError:
        return None
    name = path.stem
    try:
        points = [(float(r["step"]), float(r[name])) for r in rows]
    except (KeyError, TypeError, ValueError):
        return None
    if not points:
        return None
    steps, values = zip(*points)
    return list(steps), list(values)


def method_curves(
    methods: list[str], live_dir: Path = LIVE_DIR
) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{method: {"loss": curve, "knn_top1": curve}} for the methods that logged a loss."""
    curves = {}
    for method in methods:
        loss = read_curve(live_dir / method / LOSS)
        if loss is None:
            continue
        curves[method] = {"loss": loss}
        knn = read_curve(live_dir / method / KNN)
        if knn is not None:
            curves[method]["knn_top1"] = knn
    return curves


def save(fig, dest: Path) -> None:
    """Write a figure atomically and release it."""
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def training_curves_figure(curves: dict, dest: Path) -> None:
    """One panel per method: its pretext loss, and the kNN monitor's top-1 on a second axis."""
    n = len(curves)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (method, series) in zip(axes.flat, curves.items()):
        steps, loss = series["loss"]
        ax.plot(steps, loss, color="tab:blue", lw=1.2)
        ax.set_title(display_name(method))
        ax.set_xlabel("step")
        ax.set_ylabel("pretext loss", color="tab:blue")
        if "knn_top1" in series:
            twin = ax.twinx()
            knn_steps, knn = series["knn_top1"]
            percent = [100 * v for v in knn]
            twin.plot(knn_steps, percent, "o-", color="tab:orange", ms=3, lw=1)
            twin.set_ylim(*knn_axis(percent))
            twin.set_ylabel("kNN top-1 (%)", color="tab:orange")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Pretraining curves")
    fig.tight_layout()
    save(fig, dest)


def knn_axis(percent: list[float], span: float = 10.0) -> tuple[float, float]:
    """The kNN axis: at least `span` points tall, so that a curve moving 0.3 points is drawn flat, not
    zoomed into a climb; within [0, 100]."""
    low, high = min(percent), max(percent)
    pad = max(0.0, span - (high - low)) / 2
    low, high = low - pad, high + pad
    shift = max(0.0, -low) - max(0.0, high - 100)
    return max(0.0, low + shift), min(100.0, high + shift)


def write_curve_tables(curves: dict, dest_dir: Path) -> None:
    """reports/curves/<method>.tsv (step, loss): one line per method in `dvc plots show`."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    for method, series in curves.items():
        steps, loss = series["loss"]
        with atomic_file(dest_dir / f"{method}.tsv", "w") as fh:
            fh.write("step\tloss\n")
            fh.writelines(f"{int(s)}\t{v:.6g}\n" for s, v in zip(steps, loss))


def accuracy_figure(results: list[MethodResults], dest: Path, scored_on: str = "test split") -> None:
    """Top-1 per method with 100%, 10% and 1% of the labels (linear probes); methods without any are left out.
    scored_on: what the accuracies were measured on ("test split", or "validation slice" under eval.split: val)."""
    results = [r for r in results if any(v is not None for v in _fraction_top1(r))]
    labels = [display_name(r.method) for r in results][::-1]
    by_fraction = list(zip(*[_fraction_top1(r) for r in results][::-1])) or [()] * (1 + len(FRACTIONS))
    names = ["100% labels", *(f"{f.removesuffix('pct')}% labels" for f in reversed(FRACTIONS))]
    series = list(zip(names, by_fraction, ("tab:blue", "tab:green", "tab:orange"), strict=False))
    height = 0.26
    fig, ax = plt.subplots(figsize=(7.5, 0.65 * len(labels) + 1.4))
    for i, (name, values, color) in enumerate(series):
        ys = [y + (1 - i) * height for y in range(len(labels))]
        bars = ax.barh(ys, [100 * (v or 0) for v in values], height, label=name, color=color)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.text(bar.get_width() + 0.3, bar.get_y() + height / 2, f"{100 * v:.1f}", va="center", fontsize=7)
    ax.set_yticks(range(len(labels)), labels)
    finite = [v for _, values, _ in series for v in values if v is not None]
    low = max(0.0, 100 * min(finite) - 10) if finite else 0.0
    ax.set_xlim(low, 100)
    ax.set_xlabel(f"linear top-1 on the {scored_on} (%)")
    ax.set_title("Linear evaluation by label fraction")
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save(fig, dest)


def _fraction_top1(r: MethodResults) -> tuple[float | None, ...]:
    """Linear top-1 with all the labels, then with each fraction from the largest."""
    return (r.linear_acc(1), *(r.lowlabel_acc(f, "linear", 1) for f in reversed(FRACTIONS)))


def write_accuracy_table(results: list[MethodResults], dest: Path) -> None:
    """reports/accuracy.tsv (method, top-1 per label fraction): a bar chart in `dvc plots show`."""
    with atomic_file(dest, "w") as fh:
        fh.write("\t".join(["method", "linear_top1", *(summary_key(f) for f in reversed(FRACTIONS))]) + "\n")
        for r in results:
            cells = _fraction_top1(r)
            if all(v is None for v in cells):
                continue
            fh.write(r.method + "\t" + "\t".join("" if v is None else f"{100 * v:.2f}" for v in cells) + "\n")
