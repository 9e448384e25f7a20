"""A DDP rank killed mid-epoch: torchrun restarts the workers and they resume from the last checkpoint;
a DDP rank sent SIGTERM: the whole job stops at a step every rank agrees on, and a rerun resumes there.

Both ranks stop themselves at a test point after a checkpoint (sslflow.testpoints), one is
killed there, and the restarted pair stops again once resumed, so the test sees the first
attempt's workers gone while torchrun still runs, whatever the machine's speed. The resumed
run must end with the weights of an uninterrupted 2-rank run.

SIGTERM (pre-emption) goes to one rank only, rank 1, which neither writes the checkpoint nor
prints: the ranks check the stop flag together every `train.log_every` steps (an all-reduce),
so rank 0 learns of it there, both write last.pt at that step and exit 143, and the same
command run again continues from it to the uninterrupted run's weights.

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
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tests.processes import process_state

from .conftest import (
    ENV,
    METHOD,
    TORCHRUN,
    assert_same_encoder,
    checkpoint_step,
    new_project,
    seeded,
    set_params,
)

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


def torchrun(project: Path, log: Path, pause_at: str = "", restarts: int = 1) -> subprocess.Popen:
    """2 ranks of `sslflow pretrain`, `restarts` restarts allowed; output to `log`."""
    cmd = [
        TORCHRUN,
        "--standalone",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        str(restarts),
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


@contextmanager
def reaped(proc: subprocess.Popen):
    """The torchrun job, killed with its workers if the test leaves it running (a failed assertion, a hang)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def resumed_from(text: str) -> list[str]:
    """The steps rank 0 said it resumed from, in a torchrun log."""
    marker = f"models/{METHOD}/last.pt: resuming from step"
    return [line.rsplit(" ", 1)[1] for line in text.splitlines() if marker in line]


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
    with reaped(proc):
        assert proc.wait(timeout=600) == 0, (root / "torchrun.log").read_text()[-4000:]
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
    with reaped(proc):
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
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    # the restarted rank 0 says where it picked up: the checkpoint written before the kill
    assert resumed_from(text) == [str(checkpointed)], text[-4000:]
    summary = json.loads((project / f"metrics/{METHOD}/pretrain.json").read_text())
    assert summary["steps"] == STEPS and summary["world_size"] == 2
    state = torch.load(project / f"models/{METHOD}/last.pt", weights_only=True)
    assert state["done"] and state["position"][2] == STEPS
    assert_same_encoder(project, uninterrupted)  # gloo on CPU: a resumed 2-rank run is bit-identical


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_the_job_at_an_agreed_step(tmp_path, tiny_project, uninterrupted):
    project = new_project(tmp_path / "p", tiny_project)
    # operational keys only (not part of the run's identity): the weights are those of `uninterrupted`.
    # The signal lands after the checkpoint at step 3, between two agreement points (every 2 steps)
    log_every, paused = 2, 3
    set_params(project, {"train.log_every": log_every, "train.checkpoint_every": paused})
    log = tmp_path / "torchrun.log"
    # no restarts: a pre-empted job ends, the scheduler (here the test) runs it again
    proc = torchrun(project, log, pause_at=f"pretrain.checkpoint:{paused}", restarts=0)
    with reaped(proc):
        pair = stopped_pair(proc, log, [], f"both ranks stopped after the checkpoint at step {paused}")
        assert checkpoint_step(project) == paused
        # a stopped process takes SIGTERM when it continues; rank 0 never gets it
        os.kill(next(pid for pid in pair if local_rank(pid) == 1), signal.SIGTERM)
        for pid in pair:
            os.kill(pid, signal.SIGCONT)
        proc.wait(timeout=600)
    text = log.read_text()
    assert proc.returncode != 0, text[-4000:]  # torchrun fails the job and reports each rank's exit
    exits = [line.split(":", 1)[1].split()[0] for line in text.splitlines() if line.strip().startswith("exitcode")]
    # Each rank stops by itself with 143, after a barrier that follows rank 0's last.pt and its line.
    # The first to exit makes torchrun send the other its own closing SIGTERM, which may land while
    # that rank is already on its way out (-15): whether it does is the machine's timing.
    assert "143" in exits and set(exits) <= {"143", "-15"}, text[-4000:]
    stops = [line for line in text.splitlines() if f"pretrain {METHOD}: stopped by SIGTERM at step" in line]
    assert len(stops) == 1, text[-4000:]  # rank 0 says it, for the whole job
    stopped = int(stops[0].split("at step ", 1)[1].split(";", 1)[0])
    # the first agreement point after the signal (a later one if Python ran the handler late), never step 3
    assert stopped > paused and stopped % log_every == 0 and stopped < STEPS, text[-4000:]
    state = torch.load(project / f"models/{METHOD}/last.pt", weights_only=True)
    assert state["position"][2] == stopped and not state["done"]
    assert state["world_size"] == 2 and len(state["loader"]) == 2  # both ranks' loader states, whole
    assert not (project / f"models/{METHOD}/encoder.pt").exists()

    rerun_log = tmp_path / "rerun.log"
    proc = torchrun(project, rerun_log, restarts=0)
    with reaped(proc):
        proc.wait(timeout=600)
    text = rerun_log.read_text()
    assert proc.returncode == 0, text[-4000:]
    assert resumed_from(text) == [str(stopped)], text[-4000:]
    state = torch.load(project / f"models/{METHOD}/last.pt", weights_only=True)
    assert state["done"] and state["position"][2] == STEPS
    assert_same_encoder(project, uninterrupted)  # gloo on CPU: bit-identical after the pre-emption
