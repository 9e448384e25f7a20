"""Helpers for the reliability tests: tiny real projects, stages as subprocesses, digests of outputs.

Every stage runs as the user runs it, `sslflow <stage>` in a project directory, so
signals, exit codes and stderr are the real ones. The session's `trained_project`
holds one uninterrupted run of every stage (rotation, a few steps of a tiny
ResNet): the reference an interrupted and rerun stage must reproduce byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.processes import default_sigint, process_state

BIN = Path(sys.executable).parent
SSLFLOW = str(BIN / "sslflow")
TORCHRUN = str(BIN / "torchrun")
# stage commands (`sslflow`, `dvc`) resolve to this interpreter's scripts, as under `make test`
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
for _name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(_name, None)

METHOD = "rotation"
# ~60 ms a step on one core: 40 steps of 16 images x 4 rotations, a checkpoint every 5
TINY = {
    "model.width": 0.125,
    "pretrain.methods": [METHOD, "random_init"],
    "pretrain.rotation.batch_size": 16,
    "pretrain.rotation.max_steps": 40,
    "train.checkpoint_every": 5,
    "train.log_every": 5,
    "train.threads": 1,
    "train.knn.val_samples": 100,
    "augment.threads": 1,
    "eval.linear.max_iter": 30,
}
STAGE_OUTS = {
    "shard": ["data/shards"],
    "pretrain": [f"models/{METHOD}/encoder.pt", f"metrics/{METHOD}/pretrain.json"],
    "extract": [f"data/features/{METHOD}"],
    "linear": [f"metrics/{METHOD}/linear.json"],
    "lowlabel": [f"metrics/{METHOD}/lowlabel.json"],
}
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}


def set_params(project: Path, values: dict) -> None:
    """Set dotted keys of the project's params.yaml (the way `-S` does, but kept in the file)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in values.items():
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def new_project(root: Path, tiny_project: Path, copy: tuple[str, ...] = ()) -> Path:
    """A writable project over the session's tiny shards (symlinked), TINY params, `copy` paths from tiny_project-like dirs."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "shards").symlink_to(tiny_project / "data" / "shards")
    shutil.copy(tiny_project / "params.yaml", root / "params.yaml")
    set_params(root, TINY)
    return root


def copy_outputs(source: Path, dest: Path, paths: list[str]) -> None:
    """Copy finished outputs (files or folders) of one project into another."""
    for rel in paths:
        src, dst = source / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def sslflow(project: Path, *args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    """`sslflow ARGS` in `project`; with check, a nonzero exit fails the test with the stderr."""
    result = subprocess.run([SSLFLOW, *args], cwd=project, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"sslflow {' '.join(args)}: exit {result.returncode}\n{result.stderr[-4000:]}"
    return result


def one_error_line(result: subprocess.CompletedProcess, prog: str) -> str:
    """The message of a refusal: exit 2 and exactly one stderr line `PROG: error: MESSAGE`."""
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-4000:]
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0][len(f"{prog}: error: ") :]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digest(project: Path, rel: str) -> dict[str, str] | None:
    """sha256 of every file under an output path (relative names), or None if it does not exist."""
    path = project / rel
    if not path.exists():
        return None
    if path.is_file():
        return {rel: sha256(path)}
    return {f"{rel}/{p.relative_to(path).as_posix()}": sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}


def snapshot(project: Path, rels: list[str]) -> dict[str, dict[str, str] | None]:
    return {rel: digest(project, rel) for rel in rels}


def temp_leftovers(project: Path) -> list[str]:
    """Hidden temporary siblings that atomic writes create (`.NAME.tmp-*`), anywhere in the project."""
    return sorted(p.relative_to(project).as_posix() for p in project.rglob(".*.tmp-*"))


@dataclass
class Interrupted:
    returncode: int
    stdout: str
    stderr: str
    orphans: list[int]  # the process's children still alive 30 s after it ended (gone at once when they die with it)


def interrupt(
    project: Path,
    args: list[str],
    sig: int,
    pause_at: str,
    timeout: float = 180,
) -> Interrupted:
    """Start `sslflow ARGS`, let it stop itself at the test point `pause_at` (sslflow.testpoints), then send
    `sig` and continue it: the signal lands at that state, however fast or slow the machine.

    Output goes to files, not pipes: a worker orphaned by SIGKILL must not keep the test waiting on a pipe.
    """
    logs = project / f".logs-{sig}-{time.monotonic_ns()}"
    logs.mkdir()
    env = {**ENV, "SSLFLOW_PAUSE_AT": pause_at}
    with open(logs / "out", "w") as out, open(logs / "err", "w") as err:
        proc = subprocess.Popen(
            [SSLFLOW, *args], cwd=project, env=env, stdout=out, stderr=err, preexec_fn=default_sigint
        )
    try:
        wait_until_stopped([proc.pid], proc, f"sslflow {' '.join(args)} at {pause_at}", logs / "err", timeout)
        children = child_pids(proc.pid)
        # a stopped process takes SIGKILL at once and the other signals when it continues
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)
        proc.wait(timeout=timeout)
        orphans = still_alive(children, within_s=30.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = Interrupted(proc.returncode, (logs / "out").read_text(), (logs / "err").read_text(), orphans)
    shutil.rmtree(logs)
    return result


def wait_until_stopped(pids: list[int], proc: subprocess.Popen, what: str, log: Path, timeout: float) -> None:
    """Poll until every pid is stopped (kernel state T); fail at once if `proc` ends, or after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not all(process_state(pid) == "T" for pid in pids):
        if proc.poll() is not None:
            pytest.fail(f"{what}: ended (exit {proc.returncode}) before reaching the point:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: did not reach the point in {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def child_pids(pid: int) -> list[int]:
    """The direct children of a live process (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def still_alive(pids: list[int], within_s: float) -> list[int]:
    """Those of `pids` still running (not zombies) after waiting up to `within_s` for them to go."""
    deadline = time.monotonic() + within_s
    while True:
        alive = [p for p in pids if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _running(pid: int) -> bool:
    return process_state(pid) not in (None, "Z")


def seeded(name: str, low: int, high: int) -> int:
    """A reproducible 'random' integer in [low, high] per test case (the point at which a signal lands)."""
    return random.Random(name).randint(low, high)


def checkpoint_step(project: Path, method: str = METHOD) -> int:
    """The global step of models/<method>/last.pt, -1 if there is none yet."""
    import torch

    path = project / "models" / method / "last.pt"
    try:
        return int(torch.load(path, weights_only=True)["position"][2])
    except FileNotFoundError:
        return -1


def encoder_tensors(project: Path, method: str = METHOD) -> dict:
    import torch

    return torch.load(project / "models" / method / "encoder.pt", weights_only=True)


def assert_same_encoder(got: Path, want: Path) -> None:
    """Identical weights (CPU training is deterministic across a resume), tensor by tensor."""
    import torch

    a, b = encoder_tensors(got), encoder_tensors(want)
    assert a["fingerprint"] == b["fingerprint"]
    for part in ("backbone", "head"):
        assert (a[part] or {}).keys() == (b[part] or {}).keys()
        for name in a[part] or {}:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory, tiny_project) -> Path:
    """One uninterrupted run of pretrain, extract, linear and lowlabel for METHOD over the tiny shards."""
    project = new_project(tmp_path_factory.mktemp("reference"), tiny_project)
    for stage in ("pretrain", "extract", "linear", "lowlabel"):
        sslflow(project, stage, "--method", METHOD, check=True)
    return project
