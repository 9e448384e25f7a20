"""The real `pipeline` flow, end to end, on the embedded Prefect server: the repo's dvc.yaml and real
`sslflow` stages on a 500 / 100 image cut of Fashion-MNIST, three cheap methods.

One project is built by the flow, a second copy by `dvc repro`: the same stages run and the
deterministic outputs are byte-identical. A rerun of the flow, or of `dvc repro`, executes nothing DVC
calls current, and a param change reruns only the stages that read it.
A shard corrupted in place (so silently that DVC's stat-based check cannot see it) fails the flow
with the reading stage's one-line error, exit 2, without a retry; after the repair the flow resumes
at the failed stages and leaves alone the ones that had finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sslflow import flows
from tests.conftest import REPO, cut_fashion_mnist
from tests.flows.conftest import flow_artifacts, git_dvc_init

pytestmark = pytest.mark.slow

PY = sys.executable
METHODS = ["rotation", "random_init", "raw_pixels"]
STAGES = {"shard", "export", "report"} | {
    f"{kind}@{m}" for kind in ("pretrain", "extract", "linear", "lowlabel") for m in METHODS
}


def _params() -> dict:
    """The repo's params.yaml, shrunk to seconds a stage (every other setting is the real default)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["shard_size_mb"] = 0.1  # several shards a split: 13 train, 3 val
    params["train"]["knn"]["val_samples"] = 50
    params["train"]["budget_views"] = None  # rotation's max_steps sets its length
    params["pretrain"]["methods"] = METHODS
    params["pretrain"]["rotation"].update(max_steps=2, batch_size=16)
    params["eval"]["extract"]["batch_size"] = 128
    params["eval"]["linear"].update(l2_grid=[1.0e-3], max_iter=300)  # converged: comparable with scikit-learn
    return params


def _make_project(root: Path, source: Path) -> Path:
    """A git + DVC project with the repo's dvc.yaml and a copy of the sslflow package (dvc.yaml's
    code deps: a copy keeps their hashes fixed while the repo's tree changes), committed."""
    root.mkdir(parents=True)
    git_dvc_init(root)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(REPO / "sslflow", root / "sslflow", ignore=shutil.ignore_patterns("__pycache__"))
    params = _params()
    params["data"]["source"] = str(source)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # dvclive (the pretrain stage's curves) fails in a git repository without a commit.
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "project"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True, timeout=600)
    return root


def _dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the stages run the project's copy of sslflow
    proc = subprocess.run([PY, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"dvc {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def _status(root: Path) -> dict:
    return json.loads(_dvc(root, "status", "--json") or "{}")


def _ran_by_repro(output: str) -> set[str]:
    return set(re.findall(r"^Running stage '([^']+)'", output, re.MULTILINE))


KINDS = ("pretrain", "linear", "lowlabel")


def pixel_logistic_regression(source: Path, l2: float) -> float:
    """Val top-1 of scikit-learn's multinomial logistic regression on standardised raw pixels (C = 1 / (l2 n))."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.conftest import read_idx

    def split(prefix: str):
        images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        return images.reshape(len(images), -1).astype(np.float64), read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")

    (x, y), (xv, yv) = split("train"), split("t10k")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0 / (l2 * len(x)), max_iter=5000, tol=1e-8))
    return float((model.fit(x, y).predict(xv) == yv).mean())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(root: Path, *dirs: str) -> dict[str, str]:
    """sha256 of each file, bar DVC's .gitignore entries (their order is the order the stages finished)."""
    return {
        str(p.relative_to(root)): _sha(p)
        for d in dirs
        for p in sorted((root / d).rglob("*"))
        if p.is_file() and p.name != ".gitignore"
    }


def _mtimes(root: Path) -> dict[str, int]:
    outs = ("data", "models", "metrics")
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for d in outs for p in (root / d).rglob("*") if p.is_file()}


def _run_flow(root: Path, monkeypatch):
    """pipeline() in `root`; returns its final state (Completed or Failed) and its flow run id."""
    monkeypatch.chdir(root)
    # the stages run the project's copy of sslflow, the code dvc.yaml hashes, not the repo's live tree
    monkeypatch.setenv("PYTHONPATH", str(root))
    state = flows.pipeline(return_state=True)
    return state, state.state_details.flow_run_id


def _prefect_record(flow_run_id) -> tuple[str, dict[str, object], list[str]]:
    """From the Prefect API: the flow run's name, its task runs by name, and its log messages."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # logs travel to the server in batches
    with get_client(sync_client=True) as client:
        name = client.read_flow_run(flow_run_id).name
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        logs, page = [], None
        while page is None or page:  # the API answers in pages
            where = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            page = client.read_logs(log_filter=where, offset=len(logs))
            logs += page
    return name, {t.name.split(" ")[0]: t for t in tasks}, [log.message for log in logs]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """50 train / 10 val real Fashion-MNIST images a class, in source order."""
    return cut_fashion_mnist(tmp_path_factory.mktemp("fmnist-cut"), {"train": 50, "val": 10})


@pytest.fixture(scope="module")
def repro_project(tmp_path_factory, source) -> tuple[Path, str]:
    """The same project built by `dvc repro`: the reference the flow is compared to."""
    root = _make_project(tmp_path_factory.mktemp("repro") / "project", source)
    return root, _dvc(root, "repro")


@pytest.fixture
def task_logs(caplog):
    """Task runs log at INFO (Prefect's default; the tests' Prefect settings keep warnings only), and every
    record reaches the server before the session's embedded server stops."""
    from prefect.logging.handlers import APILogWorker

    caplog.set_level(logging.INFO, logger="prefect.task_runs")
    yield
    APILogWorker.drain_all(timeout=30)


def test_pipeline_flow_matches_dvc_repro_and_reruns_nothing(tmp_path, source, repro_project, monkeypatch, task_logs):
    root = _make_project(tmp_path / "project", source)

    state, run_id = _run_flow(root, monkeypatch)
    assert state.is_completed(), state.message
    first = state.result()
    assert first == {stage: "ran" for stage in STAGES}

    # every output INTERFACE.md names, and DVC agrees the flow recorded all of it in dvc.lock
    manifest = json.loads((root / "data/shards/manifest.json").read_text())
    for split, count in (("train", 500), ("val", 100)):
        assert manifest["splits"][split]["count"] == count
        for shard in manifest["splits"][split]["shards"]:
            tar = root / "data/shards" / split / shard["name"]
            assert _sha(tar) == shard["sha256"] and tar.with_suffix(".idx").is_file()
    assert {p.name for p in (root / "data/shards/subsets").iterdir()} == {"1pct.txt", "10pct.txt", "val.txt"}
    for m in METHODS:
        assert (root / f"models/{m}/encoder.pt").is_file()
        assert {p.name for p in (root / f"data/features/{m}").iterdir()} == {"train.npz", "val.npz"}
    metrics = {m: {k: json.loads((root / f"metrics/{m}/{k}.json").read_text()) for k in KINDS} for m in METHODS}
    assert [metrics[m]["pretrain"]["steps"] for m in METHODS] == [2, 0, 0]  # rotation's 2 steps; controls train none
    assert all(set(metrics[m]["lowlabel"]) == {"1pct", "10pct"} for m in METHODS)
    # an independent computation: scikit-learn's logistic regression on the source's pixels, read from the
    # idx files, at the L2 strength the stage reports (one value in the grid): within one val image of 100
    assert metrics["raw_pixels"]["linear"]["l2"] == 1.0e-3
    assert abs(metrics["raw_pixels"]["linear"]["top1"] - pixel_logistic_regression(source, 1.0e-3)) <= 0.01
    report = (root / "reports/report.md").read_text()
    assert all(f"| {row} |" in report for row in ("Rotation", "Random init (untrained)", "Raw pixels"))
    summary = json.loads((root / "reports/summary.json").read_text())
    assert [row["method"] for row in summary] == METHODS
    for row in summary:  # the report's numbers are the stages' numbers
        assert row["linear_top1"] == metrics[row["method"]]["linear"]["top1"]
        assert row["pct10_top1"] == metrics[row["method"]]["lowlabel"]["10pct"]["linear_top1"]
    assert _status(root) == {"report": ["always changed"]}, "everything but the always-changed report is current"

    # Prefect's record: a run name with the methods, task names with stage and budget, the stages' own log lines
    name, tasks, logs = _prefect_record(run_id)
    assert name == "pipeline-rotation-random_init-raw_pixels"
    assert set(tasks) == STAGES
    assert tasks["pretrain@rotation"].name == "pretrain@rotation (2 steps, batch 16, sgd lr 1)"
    assert "data/shards/train: 500 samples in 13 shards" in logs, "the shard stage's output reached Prefect"
    assert any(line.startswith("metrics/raw_pixels/linear.json: top-1") for line in logs)
    pretrained = json.loads((root / "metrics/rotation/pretrain.json").read_text())
    assert any(line.startswith("pretrain rotation: step 2/2  epoch 1/1  loss ") for line in logs), "progress"
    assert any(line.startswith("pretrain rotation: models/rotation/encoder.pt  2 steps  loss ") for line in logs)

    # Prefect's UI: the report's tables and each pretraining's progress and metrics, as artifacts of the run
    artifacts = flow_artifacts(run_id)
    tables = artifacts["sslflow-report"]
    assert tables.type == "markdown" and report.startswith(tables.data + "\n## Plots"), "report.md without figures"
    assert "| Rotation |" in tables.data and "| Raw pixels |" in tables.data
    assert artifacts["sslflow-summary"].type == "table"
    assert json.loads(artifacts["sslflow-summary"].data) == summary
    assert float(artifacts["pretrain-rotation-progress"].data) == 100.0
    for m in METHODS:
        assert json.loads(artifacts[f"pretrain-{m.replace('_', '-')}"].data) == [
            pretrained if m == "rotation" else json.loads((root / f"metrics/{m}/pretrain.json").read_text())
        ]

    # a rerun executes nothing DVC calls current: only `report`, which dvc.yaml marks always_changed
    before = _mtimes(root)
    state, _ = _run_flow(root, monkeypatch)
    assert state.result() == {stage: "ran" if stage == "report" else "skipped" for stage in STAGES}
    assert _mtimes(root) == before, "no output was rewritten"
    assert _ran_by_repro(_dvc(root, "repro")) == {"report"}, "dvc repro agrees with the flow's records"

    # `dvc repro` in a second copy ran the same stages and made the same bytes
    other, repro_log = repro_project
    assert _ran_by_repro(repro_log) == set(first)
    deterministic = ("data/shards", "data/features", "reports")
    timed = {"reports/report.md", "reports/summary.json"}  # they show each pretraining's seconds
    ours, theirs = ({k: v for k, v in _files(r, *deterministic).items() if k not in timed} for r in (root, other))
    assert ours == theirs
    assert _untimed_report(root) == _untimed_report(other)
    for ours, theirs in zip(*(json.loads((r / "reports/summary.json").read_text()) for r in (root, other))):
        assert ours.pop("pretrain_s") > 0 and theirs.pop("pretrain_s") > 0
        assert ours == theirs
    assert _files(root, "metrics").keys() == _files(other, "metrics").keys()
    for m in METHODS:
        for kind in ("linear", "lowlabel"):
            assert _sha(root / f"metrics/{m}/{kind}.json") == _sha(other / f"metrics/{m}/{kind}.json")
        # pretrain.json: all but the timings (wall_s, images_per_s) must agree
        ours, theirs = (json.loads((r / f"metrics/{m}/pretrain.json").read_text()) for r in (root, other))
        timings = {"wall_s", "images_per_s"}
        assert {k: v for k, v in ours.items() if k not in timings} == {
            k: v for k, v in theirs.items() if k not in timings
        }
        # encoder.pt: byte-identical too (torch.save records the file name it writes, and
        # sslflow.atomic.atomic_path hands it the destination's own name)
        assert _sha(root / f"models/{m}/encoder.pt") == _sha(other / f"models/{m}/encoder.pt")


def _set(root: Path, key: str, value) -> None:
    """Set one dotted key of the project's params.yaml (as `-S` does, but kept in the file)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_repro_twice_then_one_param(tmp_path, repro_project):
    """A second `dvc repro` redoes nothing but the always-changed report; a param reruns only its stages."""
    root = tmp_path / "project"
    shutil.copytree(repro_project[0], root, symlinks=True)
    assert _ran_by_repro(repro_project[1]) == STAGES
    assert _ran_by_repro(_dvc(root, "repro")) == {"report"}

    _set(root, "eval.linear.max_iter", 20)
    probes = {f"{kind}@{m}" for kind in ("linear", "lowlabel") for m in METHODS}  # lowlabel's probes use eval.linear
    assert _status(root).keys() - {"report"} == probes
    assert _ran_by_repro(_dvc(root, "repro")) == probes | {"report"}

    _set(root, "pretrain.rotation.lr", 0.5)
    # not the controls', nor the shards; export reads every method's params (config.json's "trained_with")
    assert _status(root).keys() - {"report"} == {"pretrain@rotation", "export"}
    assert yaml.safe_load((root / "dvc.lock").read_text())["stages"]["shard"]


def _untimed_report(root: Path) -> str:
    """report.md with the linear table's Pretrain (s) cells blanked: the one thing two runs may differ in."""
    head, linear, rest = re.split(
        r"(?=^## Linear evaluation|^## Label fractions)", (root / "reports/report.md").read_text(), flags=re.M
    )
    linear = re.sub(r"^((?:\|[^|\n]*){4}\|) [0-9]+ \|", r"\1 s |", linear, flags=re.M)
    return head + linear + rest


def _corrupt_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Replace bytes of equal length in place, keeping the inode, size and mtime, as bit rot would:
    DVC trusts its cached hash of an unchanged (inode, mtime, size), so only the reading stage can notice."""
    assert len(old) == len(new)
    stat = path.stat()
    data = path.read_bytes()
    assert data.count(old) == 1
    with open(path, "r+b") as fh:
        fh.seek(data.index(old))
        fh.write(new)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_corrupt_shard_output_fails_its_reader_once_and_rerun_resumes(tmp_path, repro_project, monkeypatch):
    """The shard stage's 10% label list loses a key to corruption. (Bytes changed inside a tar at the same
    size are `sslflow shard --verify`'s to find, by sha256: the readers check shard sizes only.)"""
    root = tmp_path / "project"
    shutil.copytree(repro_project[0], root, symlinks=True)
    assert _status(root) == {"report": ["always changed"]}  # also fills DVC's hash cache for the copy
    subset = root / "data/shards/subsets/10pct.txt"
    good = subset.read_bytes()
    in_1pct = set((root / "data/shards/subsets/1pct.txt").read_text().split())
    victim = next(key for key in subset.read_text().split() if key not in in_1pct)

    # rotation's branch must be redone; the 10% list (read by lowlabel only) is corrupt
    for gone in ("models/rotation", "data/features/rotation"):
        shutil.rmtree(root / gone)
    # retraining gives the same encoder and features bytes, after which DVC would rightly skip lowlabel:
    # its previous metrics are edited so that it must run (and meet the corrupt list)
    stale = root / "metrics/rotation/lowlabel.json"
    stale.write_text(stale.read_text() + "\n")
    _corrupt_in_place(subset, victim.encode(), victim.replace("train_", "trainX").encode())
    branch = {f"{kind}@rotation" for kind in ("pretrain", "extract", "linear", "lowlabel")}
    assert _status(root).keys() == branch | {"export", "report"}, "DVC does not see the corruption"
    before = _mtimes(root)

    state, run_id = _run_flow(root, monkeypatch)
    assert state.is_failed()
    with pytest.raises(flows.StageFailed) as failed:
        state.result()
    assert failed.value.returncode == 2
    expected = (
        "lowlabel@rotation: sslflow lowlabel: error: data/features/rotation/train.npz: "
        f"1 subset key(s) not among the features, e.g. '{victim.replace('train_', 'trainX')}'"
    )
    assert str(failed.value) == expected
    _, tasks, _ = _prefect_record(run_id)
    for stage in ("pretrain@rotation", "extract@rotation", "linear@rotation"):
        assert tasks[stage].state.is_completed(), f"{stage} finished before the failure"
    assert tasks["lowlabel@rotation"].state.is_failed()
    assert tasks["lowlabel@rotation"].run_count == 1, "bad input is not retried (launch.retries is 1)"
    assert "report" not in tasks or not tasks["report"].state.is_completed(), "report ran after a failed upstream"
    after = _mtimes(root)
    lowlabel = "metrics/rotation/lowlabel.json"
    assert after[lowlabel] == before[lowlabel], "the failed stage left its previous metrics as they were"
    assert {k: v for k, v in after.items() if "rotation" not in k} == {
        k: v for k, v in before.items() if "rotation" not in k
    }, "only rotation's branch was written"

    # the repair (the list's good bytes, as `sslflow shard` writes them): the flow resumes at the failed stage
    subset.write_bytes(good)
    state, _ = _run_flow(root, monkeypatch)
    assert state.result() == {
        stage: "ran" if stage in ("lowlabel@rotation", "report") else "skipped" for stage in STAGES
    }
    assert _status(root) == {"report": ["always changed"]}
    ours, theirs = (r / "metrics/rotation/lowlabel.json" for r in (root, repro_project[0]))
    assert _sha(ours) == _sha(theirs)
