"""`SSLFLOW_TIMES`: every command's wall seconds, and the per-stage table benchmarks/stage_times.py makes of them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from sslflow.cli import main

REPO = Path(__file__).resolve().parents[1]


def _stage_times():
    spec = importlib.util.spec_from_file_location("stage_times", REPO / "benchmarks" / "stage_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_command_appends_its_seconds_since_process_start(tmp_path, monkeypatch, capsys):
    times = tmp_path / "times.jsonl"
    monkeypatch.setenv("SSLFLOW_TIMES", str(times))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    assert main(["shard", "-S", "nope=1"]) == 2
    assert main(["nonsense"]) == 2
    first, second = (json.loads(line) for line in times.read_text().splitlines())
    assert first["command"] == "shard -S nope=1" and first["exit"] == 2 and "rank" not in first
    assert second["command"] == "nonsense" and second["exit"] == 2
    # since the process (pytest's) started: more than this test has taken, and growing
    assert 0 < first["seconds"] <= second["seconds"]


def test_the_table_counts_a_torchrun_job_once_and_what_dvc_spent_besides():
    records = [
        {"command": "shard", "seconds": 10.0, "exit": 0},
        {"command": "pretrain --method simclr", "seconds": 50.0, "exit": 0, "rank": 0},
        {"command": "pretrain --method simclr", "seconds": 49.0, "exit": 0, "rank": 1},
        {"command": "pretrain --method rotation -S train.lr=1", "seconds": 30.0, "exit": 0},
        {"command": "extract --method simclr", "seconds": 5.0, "exit": 0},
    ]
    rows = _stage_times().stage_rows(records, total_s=100.0)
    assert rows == [
        {"stage": "pretrain", "processes": 2, "seconds": 80.0, "share": 0.8},
        {"stage": "shard", "processes": 1, "seconds": 10.0, "share": 0.1},
        {"stage": "extract", "processes": 1, "seconds": 5.0, "share": 0.05},
        {"stage": "dvc besides the stages", "processes": 0, "seconds": 5.0, "share": 0.05},
    ]
    table = _stage_times().markdown(rows)
    assert table.splitlines()[2] == "| pretrain | 2 | 80 | 80.0% |"
    assert table.splitlines()[-1] == "| **dvc repro** | 4 | **100** | 100% |"
