"""What the Prefect flows publish to the UI: pretraining progress, its final metrics, the report's
tables and a sweep's experiments.

A stage's log already reaches Prefect line by line; artifacts are what a person
reads without scrolling a log: a progress bar per pretraining task while it
trains, its metrics when it ends, the report's tables (markdown, as in
reports/report.md, and summary.json's rows as a table) when the pipeline ends.
Every artifact belongs to the flow run (and the task run) that made it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from sslflow import paths
from sslflow.progress import parse_step

REPORT_KEY = "sslflow-report"
SUMMARY_KEY = "sslflow-summary"


def artifact_key(*words: str) -> str:
    """Prefect's artifact keys allow lowercase letters, digits and dashes only: 'pretrain-simclr-v2'."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(words).lower()).strip("-")


class StageProgress:
    """A progress artifact that follows a pretraining stage's progress lines (sslflow.progress)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.key = artifact_key("pretrain", method, "progress")
        self.artifact_id = None
        self.percent = -1.0

    def see(self, line: str) -> None:
        """Move the bar if `line` is a progress line; ignore any other line."""
        parsed = parse_step(line)
        if parsed is None:
            return
        step, total = parsed
        percent = round(100.0 * step / max(1, total), 1)
        if percent == self.percent:
            return
        self.percent = percent
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(
                percent, key=self.key, description=f"pretrain {self.method}: step {step}/{total}"
            )
        else:
            update_progress_artifact(
                self.artifact_id, percent, description=f"pretrain {self.method}: step {step}/{total}"
            )


def publish_pretrain_metrics(method: str) -> None:
    """metrics/<method>/pretrain.json as a one-row table."""
    path = paths.metrics(method, "pretrain")
    if not path.is_file():
        return
    create_table_artifact(
        [json.loads(path.read_text())], key=artifact_key("pretrain", method), description=f"{path}: final metrics"
    )


def publish_report() -> bool:
    """The report's tables (markdown, without its figures) and summary.json's rows; False when there is no report."""
    summary, report = paths.REPORTS / "summary.json", paths.REPORTS / "report.md"
    if not summary.is_file() or not report.is_file():
        return False
    create_markdown_artifact(
        report.read_text().partition("\n## Plots")[0],  # the figures' paths are relative to reports/
        key=REPORT_KEY,
        description=f"{paths.REPORTS / 'report.md'}: the result tables",
    )
    create_table_artifact(json.loads(summary.read_text()), key=SUMMARY_KEY, description=f"{summary}: one row a method")
    return True


def experiments_table(rows: list[dict[str, Any]], grid: Iterable[str]) -> list[dict[str, Any]]:
    """One row per experiment: its name, the grid's params, and its top-1 metrics.

    A metric column is `<file> <key>` (e.g. 'metrics/simclr/linear.json top1'); only the
    keys with 'top1' are kept, the accuracies the report compares, unless the metrics have
    none: then every number is.
    """
    grid = list(grid)
    numbers = [
        {f"{file} {key}": value for file, data in row["metrics"].items() for key, value in _leaves(data)}
        for row in rows
    ]
    accuracy = [{k: v for k, v in metrics.items() if "top1" in k.rsplit(" ", 1)[-1]} for metrics in numbers]
    if any(accuracy):
        numbers = accuracy
    columns = list(dict.fromkeys(key for metrics in numbers for key in metrics))
    table = []
    for row, metrics in zip(rows, numbers):
        params = row["params"].get("params.yaml", {})
        table.append(
            {
                "experiment": row["name"],
                **{key: _lookup(params, key) for key in grid},
                **{key: metrics.get(key) for key in columns},  # every row has every column
            }
        )
    return table


def publish_experiments(name: str, rows: list[dict[str, Any]], grid: Iterable[str]) -> None:
    create_table_artifact(
        experiments_table(rows, grid), key=artifact_key("sweep", name), description="`dvc exp show`: every experiment"
    )


def _leaves(data: Any, prefix: str = "") -> list[tuple[str, float]]:
    """Numeric leaves of a nested dict, as ('a.b', value)."""
    if isinstance(data, dict):
        return [leaf for key, value in data.items() for leaf in _leaves(value, f"{prefix}{key}.")]
    if isinstance(data, int | float) and not isinstance(data, bool):
        return [(prefix.rstrip("."), data)]
    return []


def _lookup(params: dict, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
