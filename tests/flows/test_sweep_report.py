"""A real 2-point sweep, from `sslflow flow sweep` to the report's ablation figure, in a git + DVC project
laid out as the repo is (its dvc.yaml, .gitignore and a copy of sslflow), in the state a fresh clone is
after `make run`: the pipeline's dvc.lock and metrics are in the workspace, not in any commit.

The figure's numbers must be the experiments' own metrics: each is read back here from the
experiment's git commit (`git show <exp ref>:metrics/simclr/linear.json`), not from `dvc exp show`,
so an experiment whose commit carries no metrics (metrics/ ignored by git) fails the test.
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

from sslflow import flows
from tests.conftest import REPO, cut_fashion_mnist
from tests.flows.conftest import git_dvc_init

pytestmark = pytest.mark.slow

TEMPERATURES = [0.2, 0.5]  # the sweep; the baseline commit has the profile's 0.1


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def _project(root: Path, source: Path) -> Path:
    """SimCLR alone for a few steps on a 500 / 100 image cut; every other setting is the repo's."""
    root.mkdir(parents=True)
    git_dvc_init(root)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "sslflow", root / "sslflow", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source=str(source), shard_size_mb=0.1)
    params["pretrain"]["methods"] = ["simclr", "random_init"]
    params["pretrain"]["simclr"].update(max_steps=4, batch_size=32)
    params["train"]["knn"]["val_samples"] = 50
    params["train"]["budget_views"] = None  # simclr's max_steps sets its length
    params["eval"]["extract"]["batch_size"] = 128
    params["eval"]["linear"].update(l2_grid=[1.0e-3], max_iter=20)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def test_sweep_reaches_the_report(tmp_path, monkeypatch):
    source = cut_fashion_mnist(tmp_path / "source", {"train": 50, "val": 10})
    root = _project(tmp_path / "project", source)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PYTHONPATH", str(root))  # the stages run the project's copy of sslflow
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "the project, as cloned")
    repro = subprocess.run([sys.executable, "-m", "dvc", "repro"], capture_output=True, text=True, timeout=900)
    assert repro.returncode == 0, repro.stderr[-3000:]
    assert _git(root, "status", "--porcelain", "dvc.lock", "metrics").startswith("??"), "the run is uncommitted"

    rows = flows.sweep(grid={"pretrain.simclr.temperature": TEMPERATURES}, name="temperature", jobs=2)
    assert sorted(row["name"] for row in rows) == [f"temperature-{t}" for t in TEMPERATURES]

    # each experiment's top-1, from its own commit; the stages it did not change were not run again
    # the baseline is the uncommitted run in the workspace (its commit carries no metrics)
    baseline_t = yaml.safe_load((root / "params.yaml").read_text())["pretrain"]["simclr"]["temperature"]
    want = {baseline_t: json.loads((root / "metrics/simclr/linear.json").read_text())["top1"]}
    untouched = (root / "metrics/random_init/pretrain.json").read_text()  # its wall_s differs on a rerun
    refs = _git(root, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    for t in TEMPERATURES:
        (ref,) = [r for r in refs if r.endswith(f"/temperature-{t}")]
        exp_params = yaml.safe_load(_git(root, "show", f"{ref}:params.yaml"))
        assert exp_params["pretrain"]["simclr"]["temperature"] == t
        want[t] = json.loads(_git(root, "show", f"{ref}:metrics/simclr/linear.json"))["top1"]
        assert _git(root, "show", f"{ref}:metrics/random_init/pretrain.json") == untouched, f"{ref} re-ran random_init"

    report = subprocess.run([sys.executable, "-m", "sslflow", "report"], capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (root / "reports/report.md").read_text()
    assert "2 experiment(s) read, 1 figure(s) drawn." in text, text[text.find("## Ablations") :]
    assert "![Linear top-1 against the NT-Xent temperature](plots/ablation_temperature.png)" in text
    assert (root / "reports/plots/ablation_temperature.png").is_file()
    plotted = {
        float(t): float(top1) for t, top1 in re.findall(r"^\| NT-Xent \| ([0-9.]+) \| ([0-9.]+) \|$", text, re.M)
    }
    assert plotted == {t: round(100 * top1, 1) for t, top1 in want.items()}
