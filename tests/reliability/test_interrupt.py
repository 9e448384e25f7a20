"""Each stage interrupted by SIGINT, SIGTERM or SIGKILL at a seeded point, then rerun.

The stage stops itself at a named test point (sslflow.testpoints: after the n-th tar, the
n-th checkpoint, the n-th feature rows ...) and the signal lands there, so every case
interrupts the same work on a fast machine and a slow one.

After the signal no finished output exists that was not there before (DVC would
not take the stage for done); the rerun ends with outputs byte-identical to an
uninterrupted run's (shards, features, metrics; on CPU, the pretrained weights).
SIGTERM during pretraining checkpoints first (exit 143) and the rerun resumes there.
tests/data/test_shard_errors.py::test_interrupt_leaves_nothing_behind covers Ctrl-C
on the full Fashion-MNIST with two workers; here every signal is tried.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import cut_fashion_mnist, make_project

from .conftest import (
    METHOD,
    SIGNAL_EXIT,
    STAGE_OUTS,
    assert_same_encoder,
    checkpoint_step,
    copy_outputs,
    digest,
    interrupt,
    new_project,
    seeded,
    snapshot,
    sslflow,
    temp_leftovers,
)

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGKILL: "SIGKILL"}
LAST_LINE = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


def check_stopped(result, sig: int, prog: str) -> None:
    """The exit status the signal should give, and the CLI's one closing line where it can print one."""
    assert result.returncode == SIGNAL_EXIT[sig], result.stderr[-3000:]
    assert result.orphans == [], "worker processes outlived the stage"
    if sig in LAST_LINE:
        assert result.stderr.strip().splitlines()[-1] == f"{prog}: {LAST_LINE[sig]}", result.stderr[-3000:]


# ---- shard ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_source(tmp_path_factory) -> Path:
    """11,000 real images: about a second of sharding in ~110 tars, time for a signal to land mid-way."""
    return cut_fashion_mnist(tmp_path_factory.mktemp("shard-source"), {"train": 1000, "val": 100})


def shard_project(root: Path, source: Path) -> Path:
    return make_project(root, {"source": str(source), "shard_size_mb": 0.25, "workers": 2})


@pytest.fixture(scope="module")
def shard_reference(tmp_path_factory, shard_source) -> dict:
    project = shard_project(tmp_path_factory.mktemp("shard-reference"), shard_source)
    sslflow(project, "shard", check=True)
    return digest(project, "data/shards")


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS, ids=NAMES.get)
def test_shard_interrupted_then_rerun(tmp_path, shard_source, shard_reference, sig):
    project = shard_project(tmp_path / "p", shard_source)
    written = seeded(f"shard-{sig}", 2, 30)  # tars finished when the signal goes (of ~110)
    stopped = interrupt(project, ["shard"], sig, pause_at=f"shard.written:{written}")
    check_stopped(stopped, sig, "sslflow shard")
    assert not (project / "data/shards").exists()
    if sig != signal.SIGKILL:  # a killed process cannot clean up; the rerun does (below)
        assert temp_leftovers(project) == []

    sslflow(project, "shard", check=True)
    assert digest(project, "data/shards") == shard_reference
    assert temp_leftovers(project) == []


# ---- pretrain ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS, ids=NAMES.get)
def test_pretrain_interrupted_then_resumed(tmp_path, tiny_project, trained_project, sig):
    project = new_project(tmp_path / "p", tiny_project)
    outs = STAGE_OUTS["pretrain"]
    at_least = seeded(f"pretrain-{sig}", 5, 20)  # a checkpoint at this step or later exists when the signal goes
    result = interrupt(project, ["pretrain", "--method", METHOD], sig, pause_at=f"pretrain.checkpoint:{at_least}")

    checkpointed = -(-at_least // 5) * 5  # the first checkpoint (every 5 steps) at or after `at_least`
    resume_from = checkpoint_step(project)
    if sig == signal.SIGTERM:  # pre-emption: checkpoint at the next step, say so, exit 143
        assert result.returncode == 143, result.stderr[-3000:]
        assert (
            f"pretrain {METHOD}: stopped by SIGTERM at step {resume_from}; models/{METHOD}/last.pt saved"
            in result.stderr
        )
    else:
        check_stopped(result, sig, "sslflow pretrain")
    assert snapshot(project, outs) == dict.fromkeys(outs)  # no encoder, no metrics
    if sig == signal.SIGKILL:  # the kernel ends a stopped process where it stands
        assert resume_from == checkpointed
    else:
        # Python runs a handler when its main thread next checks for signals, which another thread
        # can put off by a step or more: the stop comes at the pause or after it, never before
        assert resume_from >= checkpointed
        if sig == signal.SIGINT:  # nothing saved on Ctrl-C: the last periodic checkpoint
            assert resume_from % 5 == 0

    rerun = sslflow(project, "pretrain", "--method", METHOD, check=True)
    assert f"models/{METHOD}/last.pt: resuming from step {resume_from}" in rerun.stderr
    assert_same_encoder(project, trained_project)
    assert digest(project, f"metrics/{METHOD}/pretrain.json") is not None
    assert temp_leftovers(project) == []


# ---- extract, linear, lowlabel ----------------------------------------------------------------

# the cheap stages: one or two signals each, so that every signal is tried on an evaluation stage
EVAL_CASES = [
    ("extract", signal.SIGTERM),
    ("extract", signal.SIGKILL),
    ("linear", signal.SIGINT),
    ("lowlabel", signal.SIGKILL),
    ("lowlabel", signal.SIGTERM),
]
# where each stage stops for the signal: mid-way through the train features (1,000 rows in
# batches of 512: after the first), after the probe's fit before its file is written, after the
# first of the two label fractions
PAUSE_AT = {"extract": "extract.rows:512", "linear": "linear.probed", "lowlabel": "lowlabel.fraction:1"}
NEEDS = {
    "extract": [f"models/{METHOD}/encoder.pt"],
    "linear": [f"models/{METHOD}/encoder.pt", f"data/features/{METHOD}"],
    "lowlabel": [f"models/{METHOD}/encoder.pt", f"data/features/{METHOD}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("stage, sig", EVAL_CASES, ids=[f"{s}-{NAMES[g]}" for s, g in EVAL_CASES])
def test_eval_stage_interrupted_then_rerun(tmp_path, tiny_project, trained_project, stage, sig):
    project = new_project(tmp_path / "p", tiny_project)
    copy_outputs(trained_project, project, NEEDS[stage])
    outs = STAGE_OUTS[stage]
    if stage != "extract":  # an earlier result must survive an interrupted rewrite untouched
        (project / outs[0]).parent.mkdir(parents=True, exist_ok=True)
        (project / outs[0]).write_text('{"from": "an earlier run"}\n')
    before = snapshot(project, outs)

    result = interrupt(project, [stage, "--method", METHOD], sig, pause_at=PAUSE_AT[stage])
    check_stopped(result, sig, f"sslflow {stage}")
    assert snapshot(project, outs) == before
    if sig != signal.SIGKILL:
        assert temp_leftovers(project) == []

    sslflow(project, stage, "--method", METHOD, check=True)
    assert snapshot(project, outs) == snapshot(trained_project, outs)
    assert temp_leftovers(project) == []
