"""The two result tables of the SimCLR papers, as markdown, with the controls in the same tables.

Linear evaluation (SimCLR table 6): Method | Architecture | Param (M) | Views | Pretrain (s) | Top 1 | Top 5,
where Views is the budget a method pretrained on (images its backbone processed, views included) and
Pretrain (s) the seconds it took: what the rows compare.
Label fractions, SimCLRv2's table 3 with its two-level header flattened,
Method | Architecture | Views | Top 1 at 1% / 10% | Top 5 at 1% / 10%, twice: linear
classifiers on frozen features for every method and control, and the semi-supervised
table itself: the supervised baseline (an untrained encoder trained on the subset only),
fine-tuned encoders, self-distilled students. Then SimCLRv2's "from which head layer" rows.
Accuracies are percentages with one decimal; "-" marks what was not run.
"""

from __future__ import annotations

from collections.abc import Sequence

from sslflow.report.collect import FRACTIONS, MethodResults, is_control

LINEAR_HEADER = ("Method", "Architecture", "Param (M)", "Views", "Pretrain (s)", "Top 1", "Top 5")
LOWLABEL_HEADER = ("Method", "Architecture", "Views", "Top 1, 1%", "Top 1, 10%", "Top 5, 1%", "Top 5, 10%")


def display_name(method: str) -> str:
    """The label the method's module declares (sslflow.methods), or the name itself."""
    from sslflow.methods.registry import label

    return label(method)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def params_m(value: float | None) -> str:
    """Millions of backbone parameters: whole millions from 10 M up, as the papers print them (ResNet-50: 24)."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def views(value: int | None) -> str:
    """The pretraining budget in views, with thousands separators (0: a control that trains nothing)."""
    return "-" if value is None else f"{value:,}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    """Pipe table; columns from `numeric_from` on are right-aligned. A 1-cell row is a group label."""
    width = len(header)
    align = [":--" if i < numeric_from else "--:" for i in range(width)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        cells = [f"*{row[0]}*"] + [""] * (width - 1) if len(row) == 1 else list(row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _grouped(methods: list[MethodResults]) -> list[tuple[str, list[MethodResults]]]:
    learned = [r for r in methods if not is_control(r.method)]
    controls = [r for r in methods if is_control(r.method)]
    return [(label, rows) for label, rows in (("Self-supervised methods:", learned), ("Controls:", controls)) if rows]


def linear_table(methods: list[MethodResults]) -> str:
    """Linear evaluation on frozen features, 100% of the labels."""
    rows: list[tuple[str, ...]] = []
    for label, group in _grouped(methods):
        rows.append((label,))
        for r in group:
            rows.append(
                (
                    display_name(r.method),
                    r.backbone or "-",
                    params_m(r.params_m),
                    views(r.views),
                    seconds(r.pretrain_s),
                    pct(r.linear_acc(1)),
                    pct(r.linear_acc(5)),
                )
            )
    return markdown_table(LINEAR_HEADER, rows, numeric_from=2)


def _fraction_cells(r: MethodResults, classifier: str) -> tuple[str, ...]:
    return tuple(pct(r.lowlabel_acc(f, classifier, k)) for k in (1, 5) for f in FRACTIONS)


def label_fraction_linear_table(methods: list[MethodResults]) -> str:
    """1% / 10% of the labels, a linear classifier on each method's frozen features."""
    rows: list[tuple[str, ...]] = []
    for label, group in _grouped([r for r in methods if r.lowlabel is not None]):
        rows.append((label,))
        rows.extend(
            (display_name(r.method), r.backbone or "-", views(r.views), *_fraction_cells(r, "linear")) for r in group
        )
    return markdown_table(LOWLABEL_HEADER, rows, numeric_from=2)


def finetuned_name(r: MethodResults) -> str:
    """'SimCLRv2, fine-tuned from head layer 1': where the classifier sat is part of the method."""
    layers = r.lowlabel_value("finetune_head_layers")
    return display_name(r.method) + ", fine-tuned" + (f" from head layer {layers}" if layers else "")


def semi_supervised_table(methods: list[MethodResults]) -> str:
    """SimCLRv2's table 3 and its groups: the supervised baseline, encoders fine-tuned on the subset
    (unlabelled data used in a task-agnostic way), then self-distilled students (used in both ways).

    The supervised baseline is the untrained encoder (random_init) trained on the subset alone.
    """

    def row(r: MethodResults, name: str, classifier: str) -> tuple[str, ...]:
        return (name, r.backbone or "-", views(r.views), *_fraction_cells(r, classifier))

    baseline = [row(r, "Supervised baseline", "finetune") for r in methods if r.method == "random_init"]
    tuned = [row(r, finetuned_name(r), "finetune") for r in methods if r.method != "random_init"]
    distilled = [row(r, f"{display_name(r.method)}, self-distilled", "distill") for r in methods]
    rows: list[tuple[str, ...]] = [r for r in baseline if _filled(r)]
    for label, group in (
        ("Methods using unlabelled data in a task-agnostic way (fine-tuned):", tuned),
        ("Methods using unlabelled data in both ways (fine-tuned, then distilled):", distilled),
    ):
        group = [r for r in group if _filled(r)]
        if group:
            rows += [(label,), *group]
    return markdown_table(LOWLABEL_HEADER, rows, numeric_from=2) if rows else ""


def _filled(row: tuple[str, ...]) -> bool:
    """A row with at least one accuracy: the classifier ran for this method."""
    return any(cell != "-" for cell in row[3:])


HEAD_LAYER_HEADER = ("Fine-tuned from", "Top 1, 1%", "Top 1, 10%", "Top 5, 1%", "Top 5, 10%")


def head_layer_table(r: MethodResults) -> str:
    """One method fine-tuned from each projection-head layer it was asked for (SimCLRv2: 0 vs 1)."""
    by_fraction = {f: r.lowlabel_value("finetune_from_head", f) or {} for f in FRACTIONS}
    layers = sorted({int(n) for scores in by_fraction.values() for n in scores})
    rows = []
    for n in layers:
        cells = [pct((by_fraction[f].get(str(n)) or {}).get(f"top{k}")) for k in (1, 5) for f in FRACTIONS]
        rows.append(("the backbone (head layer 0)" if n == 0 else f"head layer {n}", *cells))
    return markdown_table(HEAD_LAYER_HEADER, rows, numeric_from=1) if rows else ""
