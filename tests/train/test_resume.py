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

from .conftest import SMALL_MODEL, make_train_project

# 1,000 train images / 32 = 31 steps an epoch, 62 in all; a checkpoint every 10
RUN = [
    *SMALL_MODEL,
    "train.batch_size=32",
    "train.epochs=2",
    "pretrain.simclr.max_steps=null",  # the profile's cut-off: run the two epochs
    "train.checkpoint_every=10",
    "train.log_every=5",
    "train.warmup_epochs=0.5",
    "train.knn.val_samples=100",
    "augment.threads=1",
]
TOTAL_STEPS = 62


def start(project: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sslflow", "pretrain", "--method", "simclr"]
    for item in RUN:
        cmd += ["-S", item]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpoint_step(project: Path) -> int:
    path = project / "models" / "simclr" / "last.pt"
    if not path.exists():
        return -1
    return torch.load(path, weights_only=True)["position"][2]


def wait_for_checkpoint(proc: subprocess.Popen, project: Path, at_least: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = checkpoint_step(project)
        if step >= at_least:
            return step
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


def finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err


@pytest.mark.slow
def test_kill_and_preempt_then_resume_gives_identical_weights(tmp_path, tiny_project):
    straight = make_train_project(tmp_path / "straight", tiny_project)
    finish(start(straight))

    broken = make_train_project(tmp_path / "broken", tiny_project)
    proc = start(broken)
    first = wait_for_checkpoint(proc, broken, 10)
    proc.kill()  # SIGKILL: no chance to save anything more
    proc.wait()
    assert 10 <= first < TOTAL_STEPS

    proc = start(broken)  # resumes from `first`
    wait_for_checkpoint(proc, broken, first + 10)
    proc.send_signal(signal.SIGTERM)  # pre-emption: checkpoint at the next step, exit 143
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "rerun the same command to resume" in err
    stopped = checkpoint_step(broken)
    assert first + 10 <= stopped < TOTAL_STEPS

    finish(start(broken))

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
