"""A killed or pre-empted `sslflow pretrain` resumes from last.pt and ends with the uninterrupted run's weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.processes import process_state

from .conftest import SMALL_MODEL, make_train_project

# 1,000 train images / 32 = 31 steps an epoch, 62 in all; a checkpoint every 10
RUN = [
    *SMALL_MODEL,
    "train.batch_size=32",
    "train.epochs=2",
    "train.checkpoint_every=10",
    "train.log_every=5",
    "train.warmup_epochs=0.5",
    "train.knn.val_samples=100",
    "augment.threads=1",
]
TOTAL_STEPS = 62


def start(project: Path, pause_at: str = "") -> tuple[subprocess.Popen, Path]:
    """`python -m sslflow pretrain` in `project`, stderr to a file (nothing to drain while the test waits)."""
    cmd = [sys.executable, "-m", "sslflow", "pretrain", "--method", "simclr"]
    for item in RUN:
        cmd += ["-S", item]
    env = {**os.environ, "SSLFLOW_PAUSE_AT": pause_at}
    log = project / f".pretrain-{time.monotonic_ns()}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
    return proc, log


def checkpoint_step(project: Path) -> int:
    path = project / "models" / "simclr" / "last.pt"
    if not path.exists():
        return -1
    return torch.load(path, weights_only=True)["position"][2]


def stopped_at_point(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Wait until the process has stopped itself at its test point (kernel state T)."""
    deadline = time.monotonic() + timeout
    while process_state(proc.pid) != "T":
        assert proc.poll() is None, f"ended (exit {proc.returncode}) before its test point:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not at its test point in {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)


def signal_stopped(proc: subprocess.Popen, sig: int) -> int:
    """Send `sig` to the stopped process, continue it, and return its exit status."""
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    return proc.wait(timeout=300)


def finish(proc: subprocess.Popen, log: Path) -> None:
    proc.wait(timeout=600)
    assert proc.returncode == 0, log.read_text()[-3000:]


@pytest.mark.slow
def test_kill_and_preempt_then_resume_gives_identical_weights(tmp_path, tiny_project):
    straight = make_train_project(tmp_path / "straight", tiny_project)
    finish(*start(straight))

    broken = make_train_project(tmp_path / "broken", tiny_project)
    proc, log = start(broken, pause_at="pretrain.checkpoint:20")
    stopped_at_point(proc, log)
    assert signal_stopped(proc, signal.SIGKILL) == -signal.SIGKILL  # no chance to save anything more
    assert checkpoint_step(broken) == 20

    proc, log = start(broken, pause_at="pretrain.resumed,pretrain.checkpoint:40")  # resumes from step 20
    stopped_at_point(proc, log)
    assert checkpoint_step(broken) == 20, "resumed from the checkpoint the kill left"
    proc.send_signal(signal.SIGCONT)
    stopped_at_point(proc, log)  # at the step-40 checkpoint
    assert signal_stopped(proc, signal.SIGTERM) == 143  # pre-emption: checkpoint, say so, exit 143
    err = log.read_text()
    assert "models/simclr/last.pt: resuming from step 20" in err
    # the loop sees the flag once Python's main thread has run the handler: at step 40 or a step after
    stopped = checkpoint_step(broken)
    assert 40 <= stopped < TOTAL_STEPS
    assert f"pretrain simclr: stopped by SIGTERM at step {stopped}" in err and "rerun the same command to resume" in err

    proc, log = start(broken)
    finish(proc, log)
    assert f"models/simclr/last.pt: resuming from step {stopped}" in log.read_text()

    want = torch.load(straight / "models/simclr/encoder.pt", weights_only=True)
    got = torch.load(broken / "models/simclr/encoder.pt", weights_only=True)
    for part in ("backbone", "head"):
        assert want[part].keys() == got[part].keys()
        for name in want[part]:
            assert torch.equal(want[part][name], got[part][name]), f"{part}.{name} differs after resuming"
    assert want["fingerprint"] == got["fingerprint"]
    summary = json.loads((broken / "metrics/simclr/pretrain.json").read_text())
    reference = json.loads((straight / "metrics/simclr/pretrain.json").read_text())
    assert summary["steps"] == reference["steps"] == TOTAL_STEPS
    assert summary["final_loss"] == reference["final_loss"]
    assert summary["knn_top1"] == reference["knn_top1"]


def test_finished_checkpoint_is_not_retrained_and_other_params_start_over(train_project, capsys):
    from sslflow.params import load_params
    from sslflow.stages.pretrain import run

    overrides = [
        *SMALL_MODEL,
        "train.batch_size=64",
        "pretrain.supervised.max_steps=3",
        "train.knn.val_samples=64",
        "augment.threads=1",
    ]
    first = run(load_params("params.yaml", overrides), "supervised")
    state = torch.load("models/supervised/last.pt", weights_only=True)  # tensors and primitives only
    assert first["steps"] == 3 and state["done"] and state["position"][2] == 3
    fingerprint = torch.load("models/supervised/encoder.pt", weights_only=True)["fingerprint"]

    again = run(load_params("params.yaml", overrides), "supervised")  # nothing left to train
    assert again["final_loss"] == first["final_loss"] and again["knn_top1"] == first["knn_top1"]
    assert torch.load("models/supervised/encoder.pt", weights_only=True)["fingerprint"] == fingerprint
    assert "starting over" not in capsys.readouterr().err

    more = run(load_params("params.yaml", [*overrides, "pretrain.supervised.max_steps=4"]), "supervised")
    assert "written with other params, data or code; starting over" in capsys.readouterr().err
    assert more["steps"] == 4
    assert torch.load("models/supervised/last.pt", weights_only=True)["run_id"] != state["run_id"]
