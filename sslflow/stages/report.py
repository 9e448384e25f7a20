"""The report: reports/report.md (SimCLR-style tables), reports/summary.json and plots, from metrics/.

Ablation figures are drawn from `dvc exp show --json` when the project is a DVC
repository with experiments (the stage is always rerun, since DVC cannot track
experiments as a dependency).
"""

from __future__ import annotations

import argparse

from sslflow import paths
from sslflow.params import Params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-experiments", action="store_true", help="skip `dvc exp show` (no ablation figures)")


def run(params: Params, no_experiments: bool = False) -> list[dict]:
    """Build reports/ atomically from the metrics of params.pretrain.methods; return summary.json's rows."""
    from sslflow.eval.split import eval_split
    from sslflow.report.ablation import ExperimentsRead, gather_experiments
    from sslflow.report.document import build_report

    experiments = ExperimentsRead([], "not read (--no-experiments)") if no_experiments else gather_experiments(".")
    rows = build_report(
        list(params.pretrain.methods),
        experiments,
        draw_views=lambda folder: draw_views(params, folder),
        scored_on=eval_split(params).describe(),
    )
    print(f"{paths.REPORTS / 'report.md'}: {len(rows)} rows, {len(experiments.experiments)} experiment(s) read")
    return rows


def draw_views(params: Params, folder) -> list[tuple[str, str]]:
    """The augmentation grid of every view kind the listed methods train on, from the real loaders."""
    from sslflow.augment.preview import draw_grids
    from sslflow.methods.registry import view_kind

    kinds = [k for k in dict.fromkeys(view_kind(m) for m in params.pretrain.methods) if k is not None]
    if not kinds:
        return []
    written = draw_grids(params, kinds, folder)
    return [
        (f"What {kind} trains on: source images (left) and augmented views", path.name)
        for kind, path in zip(kinds, written)
    ]
