"""reports/: report.md, summary.json, the figures and the tables `dvc plots show` reads, in one go."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sslflow import paths
from sslflow.atomic import atomic_dir, write_json
from sslflow.report.ablation import (
    AblationFigure,
    ExperimentsRead,
    ablation_figures,
    experiments_line,
    memory_bank_table,
)
from sslflow.report.collect import FRACTIONS, MethodResults, ordered, read_results, summary_row
from sslflow.report.plots import (
    LIVE_DIR,
    accuracy_figure,
    method_curves,
    training_curves_figure,
    write_accuracy_table,
    write_curve_tables,
)
from sslflow.report.tables import (
    display_name,
    head_layer_table,
    label_fraction_linear_table,
    linear_table,
    semi_supervised_table,
)

INTRO = """# Results

Accuracies are percentages on {scored_on}; "-" marks what was not run.
Controls are computed by the same code on the same splits as the methods.
*Views* is each method's pretraining budget (the images its backbone processed,
every view counted) and *Pretrain (s)* the seconds it took.
"""

TEST_SPLIT = "the test split (data/shards/val; eval.split: test)"

LINEAR_TEXT = """## Linear evaluation

The encoder is frozen; a multinomial logistic regression is trained on its
standardised features with all train labels, its L2 strength chosen on a
held-out slice of train (never on the images scored).
"""

LOWLABEL_TEXT = """## Label fractions

The nested, class-balanced 1% and 10% subsets of the train labels. First the
linear classifier on each encoder's frozen features; the *Supervised* control's
encoder was trained with all labels, an upper reference rather than a 1% / 10% result.
"""

SEMI_SUPERVISED_TEXT = """### Semi-supervised: fine-tuned and distilled

SimCLRv2's table in its layout. *Supervised baseline* is the untrained encoder
trained on the subset alone; the methods' encoders are fine-tuned whole on the
subset (crop + flip, Nesterov SGD), SimCLRv2 from the first layer of its 3-layer
projection head; a *distilled* student, the same architecture, learns from the
fine-tuned model's tempered softmax on the train images, without their labels.
"""

MEMORY_BANK_TEXT = """### SimCLRv2 with and without its memory bank

The runs of `make ablate` that changed only `pretrain.simclr_v2.queue_size`: with a
queue, negatives also come from a momentum encoder's keys of earlier batches (MoCo).
"""

HEAD_LAYER_TEXT = """### {name}: fine-tuning from which layer

The same fine-tuning with the classifier on the backbone output (layer 0) or
after the first projection-head layer (SimCLRv2's choice, the paper's "+14%" at 1% labels on ImageNet).
"""


def report_markdown(
    results: list[MethodResults],
    figures: list[tuple[str, str]],
    ablations: list[AblationFigure],
    ablation_line: str,
    scored_on: str = TEST_SPLIT,
    memory_bank: str = "",
) -> str:
    """The whole report.md: intro, both tables, the figures (paths relative to reports/), the ablations."""
    parts = [tables_markdown(results, scored_on)]
    if figures:
        parts.append("## Plots\n\n" + "\n".join(f"![{caption}]({name})\n" for caption, name in figures))
    parts.append("## Ablations\n\n" + ablation_line + "\n")
    for figure in ablations:
        parts.append(f"![{figure.caption}](plots/{figure.file})\n\n" + ablation_table(figure))
    if memory_bank:
        parts.append(MEMORY_BANK_TEXT + "\n" + memory_bank)
    return "\n".join(parts)


def tables_markdown(results: list[MethodResults], scored_on: str = TEST_SPLIT) -> str:
    """The report's text and tables without its figures: what a page without reports/'s images shows
    (Prefect's UI). scored_on: the images the accuracies are measured on (sslflow.eval.split)."""
    intro = INTRO.format(scored_on=scored_on)
    parts = [intro, LINEAR_TEXT, linear_table(results), precision_line(results)]
    parts += [LOWLABEL_TEXT, label_fraction_linear_table(results)]
    semi = semi_supervised_table(results)
    if semi:
        parts += [SEMI_SUPERVISED_TEXT, semi, budget_line(results)]
    for r in results:
        table = head_layer_table(r)
        if table:
            parts += [HEAD_LAYER_TEXT.format(name=display_name(r.method)), table]
    return "\n".join(parts)


PRECISION_NAMES = {"bf16": "bf16 autocast", "fp32": "fp32"}


def precision_line(results: list[MethodResults]) -> str:
    """What `train.precision` resolved to for each trained method (it depends on the machine: auto is
    bf16 on GPUs and AMX CPUs), so that numbers from different machines are read knowingly."""
    names: dict[str, list[str]] = {}
    for r in results:
        if r.precision:
            names.setdefault(r.precision, []).append(display_name(r.method))
    if len(names) == 1:
        (only,) = names
        return f"Every trained method pretrained in {PRECISION_NAMES.get(only, only)} (`train.precision`).\n"
    said = "; ".join(f"{PRECISION_NAMES.get(p, p)}: {', '.join(m)}" for p, m in sorted(names.items()))
    return f"Pretraining precision (`train.precision`): {said}.\n" if said else ""


def budget_line(results: list[MethodResults]) -> str:
    """What the fine-tuned and distilled rows were given, read from their lowlabel.json."""
    epochs = {f: {r.lowlabel_value("finetune_epochs", f) for r in results} - {None} for f in FRACTIONS}
    said = [
        f"{'/'.join(map(str, sorted(e)))} epoch(s) of the {f.replace('pct', '%')} subset"
        for f, e in epochs.items()
        if e
    ]
    images = sorted({r.lowlabel_value("distill_images", f) for r in results for f in FRACTIONS} - {None})
    line = "Fine-tuning: " + ", ".join(said) + "." + rate_phrase(results) if said else ""
    if images:
        line += f" Distillation: {'/'.join(f'{n:,}' for n in images)} unlabelled train images per student."
    return line.strip() + "\n"


def rate_phrase(results: list[MethodResults]) -> str:
    """The fine-tuning rate most rows share, and any method's own (`eval.lowlabel.finetune.method_lr`)."""
    rates = {r.method: r.lowlabel_value("finetune_lr") for r in results}
    rates = {method: lr for method, lr in rates.items() if lr is not None}
    if not rates:
        return ""
    values = list(rates.values())
    common = max(values, key=values.count)
    own = [f"{display_name(method)} {lr:g}" for method, lr in rates.items() if lr != common]
    return f" Nesterov SGD at {common:g} x B/256" + (f" ({', '.join(own)})." if own else ".")


def ablation_table(figure: AblationFigure) -> str:
    """The numbers a figure plots, from `dvc exp show` (each experiment's linear top-1 on its eval split)."""
    lines = [f"| {figure.line_name} | {figure.x_name} | linear top-1 (%) |", "|:--|--:|--:|"]
    lines += [
        f"| {line} | {x:g} | {100 * top1:.1f} |" if isinstance(x, float) else f"| {line} | {x} | {100 * top1:.1f} |"
        for line, x, top1 in figure.points
    ]
    return "\n".join(lines) + "\n"


def split_name(scored_on: str) -> str:
    """'test split' or 'validation slice': the words a figure's axis has room for, from EvalSplit.describe()."""
    return scored_on.split(" (", 1)[0].removeprefix("the ")


def build_report(
    methods: list[str],
    experiments: ExperimentsRead,
    *,
    metrics_dir: Path = paths.METRICS,
    live_dir: Path = LIVE_DIR,
    dest: Path = paths.REPORTS,
    draw_views: Callable[[Path], list[tuple[str, str]]] | None = None,
    scored_on: str = TEST_SPLIT,
) -> list[dict]:
    """Write `dest` atomically (whole or not at all) and return the summary rows.

    `draw_views(folder)` draws the augmentation grids into a folder of the report
    and returns (caption, file name) pairs; they belong to the report so that one
    look shows what each method's network saw next to what it learned.
    """
    results = [read_results(m, metrics_dir) for m in ordered(methods)]
    rows = [summary_row(r) for r in results]
    curves = method_curves(ordered(methods), live_dir)
    with atomic_dir(dest) as tmp:
        write_json(tmp / "summary.json", rows)
        figures = [("Linear evaluation by label fraction", "plots/accuracy.png")]
        accuracy_figure(results, tmp / "plots" / "accuracy.png", scored_on=split_name(scored_on))
        write_accuracy_table(results, tmp / "accuracy.tsv")
        write_curve_tables(curves, tmp / "curves")  # the folder exists even when empty: dvc.yaml plots it
        if curves:
            training_curves_figure(curves, tmp / "plots" / "training_curves.png")
            figures.append(("Pretraining curves", "plots/training_curves.png"))
        if draw_views is not None:
            figures += [(caption, f"augment/{name}") for caption, name in draw_views(tmp / "augment")]
        drawn = ablation_figures(experiments.experiments, tmp / "plots")
        line = experiments_line(experiments, len(drawn))
        bank = memory_bank_table(experiments.experiments)
        (tmp / "report.md").write_text(report_markdown(results, figures, drawn, line, scored_on, bank))
    print(f"{dest / 'report.md'}: ablations: {line}")
    return rows
