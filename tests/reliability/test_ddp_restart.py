"""A DDP rank killed mid-epoch: torchrun restarts the workers and they resume from the last checkpoint.

Before sslflow.train.distributed gave each restart attempt its own store prefix,
most runs failed here: the restarted ranks read the gloo addresses of the killed
attempt from torchrun's store ('connection refused'), or hung.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from .conftest import ENV, METHOD, TORCHRUN, checkpoint_step, new_project, seeded

STEPS = 40  # TINY's pretrain.rotation.max_steps: 16 images a step, 8 per rank


def workers(parent: int) -> list[int]:
    """The pids of torchrun's worker processes (its children running sslflow)."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for pid in map(int, children):
        try:
            if b"sslflow" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except FileNotFoundError:
            continue
    return sorted(found)


def local_rank(pid: int) -> int:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(v for v in environ if v.startswith(b"LOCAL_RANK=")).split(b"=", 1)[1])


def wait_for(condition, proc: subprocess.Popen, log: Path, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"torchrun ended (exit {proc.returncode}) while waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)
    pytest.fail(f"no {what} in {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_killed_rank_restarts_and_resumes(tmp_path, tiny_project):
    project = new_project(tmp_path / "p", tiny_project)
    at_least = seeded("ddp", 5, 15)
    victim = seeded("ddp-rank", 0, 1)  # the local rank to kill
    log = tmp_path / "torchrun.log"
    cmd = [
        TORCHRUN,
        "--standalone",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "--monitor-interval",
        "0.5",
        "-m",
        "sslflow",
        "pretrain",
        "--method",
        METHOD,
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=project, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        pids = wait_for(lambda: (w := workers(proc.pid)) and len(w) == 2 and w, proc, log, "two workers")
        wait_for(lambda: checkpoint_step(project) >= at_least, proc, log, f"a checkpoint at step >= {at_least}")
        os.kill(next(pid for pid in pids if local_rank(pid) == victim), signal.SIGKILL)
        resumed_from = checkpoint_step(project)
        assert 0 < resumed_from < STEPS
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    assert set(workers(proc.pid)).isdisjoint(pids)
    # the restarted rank 0 says where it picked up: a checkpoint written before the kill, not step 0
    resumes = [
        int(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if f"models/{METHOD}/last.pt: resuming from step" in line
    ]
    assert len(resumes) == 1 and resumes[0] >= resumed_from > 0, text[-4000:]
    summary = json.loads((project / f"metrics/{METHOD}/pretrain.json").read_text())
    assert summary["steps"] == STEPS and summary["world_size"] == 2
    state = torch.load(project / f"models/{METHOD}/last.pt", weights_only=True)
    assert state["done"] and state["position"][2] == STEPS
    assert (project / f"models/{METHOD}/encoder.pt").is_file()
