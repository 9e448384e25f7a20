"""A DDP rank killed mid-epoch: torchrun restarts the workers and they resume from the last checkpoint.

Both ranks stop themselves at a test point after a checkpoint (sslflow.testpoints), one is
killed there, and the restarted pair stops again once resumed, so the test sees the first
attempt's workers gone while torchrun still runs, whatever the machine's speed. The resumed
run must end with the weights of an uninterrupted 2-rank run.

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

from tests.processes import process_state

from .conftest import ENV, METHOD, TORCHRUN, assert_same_encoder, checkpoint_step, new_project, seeded

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


def torchrun(project: Path, log: Path, pause_at: str = "") -> subprocess.Popen:
    """2 ranks of `sslflow pretrain`, one restart allowed; output to `log`."""
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
    env = {**ENV, "SSLFLOW_PAUSE_AT": pause_at}
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stopped_pair(proc: subprocess.Popen, log: Path, old: list[int], what: str) -> list[int]:
    """Wait for two workers, none of them in `old`, both stopped at their test point."""

    def ready():
        pids = [p for p in workers(proc.pid) if p not in old]
        return len(pids) == 2 and all(process_state(p) == "T" for p in pids) and pids

    return wait_for(ready, proc, log, what)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_project) -> Path:
    """The same 2-rank run, never interrupted: the weights a restarted run must end with."""
    root = tmp_path_factory.mktemp("ddp-reference")
    project = new_project(root / "p", tiny_project)
    proc = torchrun(project, root / "torchrun.log")
    try:
        assert proc.wait(timeout=600) == 0, (root / "torchrun.log").read_text()[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return project


@pytest.mark.slow
def test_killed_rank_restarts_and_resumes(tmp_path, tiny_project, uninterrupted):
    project = new_project(tmp_path / "p", tiny_project)
    at_least = seeded("ddp", 5, 15)
    checkpointed = -(-at_least // 5) * 5  # TINY checkpoints every 5 steps
    victim = seeded("ddp-rank", 0, 1)  # the local rank to kill
    log = tmp_path / "torchrun.log"
    # attempt 0 stops after the checkpoint at `checkpointed`; the restarted attempt 1 stops once it has resumed
    proc = torchrun(project, log, pause_at=f"pretrain.checkpoint:{at_least}@0,pretrain.resumed@1")
    try:
        first = stopped_pair(proc, log, [], f"both ranks stopped after the checkpoint at step {checkpointed}")
        assert checkpoint_step(project) == checkpointed
        os.kill(next(pid for pid in first if local_rank(pid) == victim), signal.SIGKILL)
        for pid in first:
            os.kill(pid, signal.SIGCONT)  # the survivor finds its peer gone; torchrun restarts the group

        second = stopped_pair(proc, log, first, "two restarted ranks stopped after resuming")
        # torchrun is still running: the first attempt's workers must be gone, not left beside the new ones
        assert proc.poll() is None
        assert [pid for pid in first if process_state(pid) not in (None, "Z")] == []
        for pid in second:
            os.kill(pid, signal.SIGCONT)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    # the restarted rank 0 says where it picked up: the checkpoint written before the kill
    resumes = [line for line in text.splitlines() if f"models/{METHOD}/last.pt: resuming from step" in line]
    assert [line.rsplit(" ", 1)[1] for line in resumes] == [str(checkpointed)], text[-4000:]
    summary = json.loads((project / f"metrics/{METHOD}/pretrain.json").read_text())
    assert summary["steps"] == STEPS and summary["world_size"] == 2
    state = torch.load(project / f"models/{METHOD}/last.pt", weights_only=True)
    assert state["done"] and state["position"][2] == STEPS
    assert_same_encoder(project, uninterrupted)  # gloo on CPU: a resumed 2-rank run is bit-identical
