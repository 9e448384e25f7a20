"""The two result tables of the SimCLR papers, as markdown, with the controls in the same tables.

Linear evaluation (SimCLR table 6): Method | Architecture | Param (M) | Views | Pretrain (s) | Top 1 | Top 5,
where Views is the budget a method pretrained on (images its backbone processed, views included) and
Pretrain (s) the seconds it took: what the rows compare.
Label fractions (SimCLRv2 table 3, its two-level header flattened):
Method | Architecture | Views | Top 1 at 1% / 10% | Top 5 at 1% / 10%, in groups: the
supervised baseline (an untrained encoder trained on the subset only), linear
classifiers on frozen features, fine-tuned encoders, self-distilled students.
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


def _has(r: MethodResults, classifier: str) -> bool:
    return any(r.lowlabel_acc(f, classifier, k) is not None for f in FRACTIONS for k in (1, 5))


def _rows_for(methods: list[MethodResults], classifier: str) -> list[MethodResults]:
    """Every method that ran the protocol gets a linear row; fine-tuned random_init is the baseline above."""
    if classifier == "linear":
        return [r for r in methods if r.lowlabel is not None]
    return [r for r in methods if _has(r, classifier) and not (classifier == "finetune" and r.method == "random_init")]


def lowlabel_table(methods: list[MethodResults]) -> str:
    """1% / 10% of the labels: supervised baseline, linear probes, fine-tuned, distilled."""
    rows: list[tuple[str, ...]] = []
    scratch = [r for r in methods if r.method == "random_init" and _has(r, "finetune")]
    if scratch:
        rows.append(("Supervised baseline (untrained encoder trained on the subset only):",))
        rows.extend(
            ("Supervised baseline", r.backbone or "-", views(r.views), *_fraction_cells(r, "finetune")) for r in scratch
        )
    groups = (
        ("linear", "Linear classifier on frozen features:"),
        ("finetune", "Fine-tuned on the subset:"),
        ("distill", "Self-distilled (student taught by the fine-tuned model on all train images):"),
    )
    for classifier, label in groups:
        group = _rows_for(methods, classifier)
        if group:
            rows.append((label,))
            rows.extend(
                (display_name(r.method), r.backbone or "-", views(r.views), *_fraction_cells(r, classifier))
                for r in group
            )
    return markdown_table(LOWLABEL_HEADER, rows, numeric_from=2)
