"""`dvc repro` on a tiny copy of the real pipeline: a second run redoes nothing, a param change only its stages.

The `report` stage is `always_changed` in dvc.yaml (it reads `dvc exp show`, which
DVC cannot track): it is the one stage that runs every time.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

from .conftest import ENV, TINY, set_params

METHODS = ["rotation", "random_init"]


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def ran(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", result.stdout))


def stale(project: Path) -> set[str]:
    return set(json.loads(dvc(project, "status", "--json").stdout))


@pytest.fixture
def dvc_project(tmp_path, tiny_source) -> Path:
    project = tmp_path / "p"
    project.mkdir()
    for cmd in (["git", "init", "-q", "-b", "main"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=project, check=True, capture_output=True, timeout=600)
    subprocess.run(
        [sys.executable, "-m", "dvc", "config", "core.analytics", "false"], cwd=project, check=True, timeout=600
    )
    shutil.copy(REPO / "dvc.yaml", project)
    shutil.copy(REPO / ".dvcignore", project)
    shutil.copytree(REPO / "sslflow", project / "sslflow", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "params.yaml", project)
    set_params(
        project,
        {
            **TINY,
            "pretrain.methods": METHODS,
            "pretrain.rotation.max_steps": 5,
            "data.source": str(tiny_source),
            "data.shard_size_mb": 0.25,
        },
    )
    # a first commit: dvclive (the pretrain monitor) fails with "Empty git repo" without one
    subprocess.run(["git", "add", "-A"], cwd=project, check=True, capture_output=True, timeout=600)
    subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@sslflow", "commit", "-qm", "tiny"],
        cwd=project,
        check=True,
        timeout=600,
    )
    return project


@pytest.mark.slow
def test_repro_twice_then_one_param(dvc_project):
    project = dvc_project
    first = dvc(project, "repro")
    every = {"shard", "report"} | {f"{s}@{m}" for s in ("pretrain", "extract", "linear", "lowlabel") for m in METHODS}
    assert ran(first) == every, first.stdout[-3000:]
    assert stale(project) <= {"report"}  # always_changed

    second = dvc(project, "repro")
    assert ran(second) == {"report"}, second.stdout[-3000:]

    set_params(project, {"eval.linear.max_iter": 20})
    probes = {f"{s}@{m}" for s in ("linear", "lowlabel") for m in METHODS}  # lowlabel's subset probes use eval.linear
    assert stale(project) - {"report"} == probes
    third = dvc(project, "repro")
    assert ran(third) == probes | {"report"}, third.stdout[-3000:]

    set_params(project, {"pretrain.rotation.lr": 0.5})
    assert stale(project) - {"report"} == {"pretrain@rotation"}  # not random_init's, nor the shards
    assert yaml.safe_load((project / "dvc.lock").read_text())["stages"]["shard"]
