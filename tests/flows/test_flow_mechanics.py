"""The pipeline flow on a small real DVC project: skip what DVC says is current, record what ran,
fail with the stage's own error, resume from the failed stage."""

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from sslflow import flows
from sslflow.launch import LaunchCfg, stage_command
from sslflow.report.ablation import gather_experiments, parse_exp_show
from sslflow.report.ablation import sweep as ablation_sweep
from tests.flows.conftest import flow_artifacts, git_dvc_init
from tests.flows.projects import runs_log as _runs
from tests.flows.projects import write_param_project, write_pretrain_project
from tests.flows.projects import write_project as _write_project

PY = sys.executable


@pytest.mark.parametrize("given, expected", [(None, "False"), ("true", "True")])
def test_the_embedded_servers_telemetry_is_off_unless_the_user_turns_it_on(given, expected):
    """Its heartbeat races the starting server for the SQLite file ("database is locked" tracebacks)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_ANALYTICS_ENABLED"}
    if given is not None:
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = given
    code = "import sslflow.flows, prefect.settings as s; print(s.get_current_settings().server.analytics_enabled)"
    proc = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == expected


def test_stage_command_wraps_pretrain_in_torchrun_only_when_distributed():
    single = LaunchCfg()
    wide = LaunchCfg(nproc_per_node=4, nnodes=2, rdzv_endpoint="head:29500")
    assert stage_command("sslflow pretrain --method simclr", single) == "sslflow pretrain --method simclr"
    assert stage_command("sslflow extract --method simclr", wide) == "sslflow extract --method simclr"
    assert stage_command("sslflow pretrain --method simclr", wide) == (
        "torchrun --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d --rdzv-endpoint=head:29500"
        " -m sslflow pretrain --method simclr"
    )


def test_grid_points_and_names():
    points = flows.grid_points({"pretrain.simclr.temperature": [0.1, 0.5], "train.batch_size": [128]})
    assert points == [
        {"pretrain.simclr.temperature": 0.1, "train.batch_size": 128},
        {"pretrain.simclr.temperature": 0.5, "train.batch_size": 128},
    ]
    assert flows.experiment_name(points[0]) == "temperature-0.1_batch_size-128"
    assert flows.parse_grid(["a.b=1,2", "c=x"]) == {"a.b": [1, 2], "c": ["x"]}


@pytest.mark.parametrize("extra", [["-S", "train.lr=0.1"], ["--params", "params/gpu-fmnist.yaml"]])
def test_flows_refuse_params_their_stages_would_not_read(extra, capsys):
    """Stages read params.yaml: a flow given other params must say so, not run with the file's."""
    from sslflow.cli import main

    assert main(["flow", "pipeline", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "sslflow flow pipeline: error: the flows run dvc.yaml's stages on params.yaml: edit it, "
        "or vary params with `sslflow flow sweep --grid KEY=V1,V2` (DVC experiments)"
    )


def test_pipeline_runs_graph_then_skips_everything(tmp_path, monkeypatch):
    git_dvc_init(tmp_path)
    _write_project(tmp_path)
    monkeypatch.chdir(tmp_path)

    graph = flows.stage_graph()
    assert [s.name for s in graph][0] == "make" and graph[-1].name == "join"
    assert graph[-1].upstream == ("left", "right")

    first = flows.pipeline()
    assert first == {"make": "ran", "left": "ran", "right": "ran", "join": "ran"}
    assert (tmp_path / "d.txt").read_text() == "make\nleft\nmake\nright\njoin\n"
    status = subprocess.run(
        [PY, "-m", "dvc", "status", "--json"], capture_output=True, text=True, check=True, timeout=600
    )
    assert json.loads(status.stdout) == {}, "the flow recorded every stage in dvc.lock"

    second = flows.pipeline()
    assert set(second.values()) == {"skipped"}
    assert _runs(tmp_path) == ["join", "left", "make", "right"], "nothing ran twice"

    repro = subprocess.run([PY, "-m", "dvc", "repro"], capture_output=True, text=True, check=True, timeout=600)
    assert _runs(tmp_path) == ["join", "left", "make", "right"], repro.stdout


def test_failed_stage_fails_flow_with_its_error_and_rerun_resumes(tmp_path, monkeypatch):
    git_dvc_init(tmp_path)
    _write_project(tmp_path, fail_on="right")
    (tmp_path / "broken").touch()
    monkeypatch.chdir(tmp_path)

    with pytest.raises(flows.StageFailed, match=r"^right: right: data/broken.bin: bad input$"):
        flows.pipeline()
    assert _runs(tmp_path) == ["left", "make"], "bad input is not retried; join never started"

    (tmp_path / "broken").unlink()
    result = flows.pipeline()
    assert result == {"make": "skipped", "left": "skipped", "right": "ran", "join": "ran"}


def test_a_crashed_stage_is_retried_and_the_flow_completes(tmp_path, monkeypatch):
    """launch.retries: 1: a stage killed mid-run (SIGKILL, as by the OOM killer) runs again, and the graph goes on."""
    git_dvc_init(tmp_path)
    _write_project(tmp_path, crash_once="right")
    monkeypatch.chdir(tmp_path)

    result = flows.pipeline()
    assert (tmp_path / "crashed").exists(), "the first attempt was killed"
    assert result == {"make": "ran", "left": "ran", "right": "ran", "join": "ran"}
    assert _runs(tmp_path) == ["join", "left", "make", "right"], "each stage finished once"
    assert (tmp_path / "d.txt").read_text() == "make\nleft\nmake\nright\njoin\n"


def _committed_param_project(root, hold: bool = False) -> None:
    """The param project as a user's clone holds it: git + DVC, every file committed."""
    git_dvc_init(root)
    write_param_project(root, hold=hold)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True, timeout=600)
    subprocess.run(["git", "commit", "-qm", "toy"], cwd=root, check=True, timeout=600)


def test_sweep_runs_one_experiment_per_point(tmp_path, monkeypatch):
    _committed_param_project(tmp_path)
    monkeypatch.chdir(tmp_path)

    state = flows.sweep(grid={"toy.x": [2, 3]}, name="x", return_state=True)
    rows = state.result()

    by_name = {row["name"]: row for row in rows}
    assert set(by_name) == {"x-2", "x-3"}
    for name, x in (("x-2", 2), ("x-3", 3)):
        assert by_name[name]["params"]["params.yaml"]["toy"] == {"x": x, "y": 10}
        assert by_name[name]["metrics"]["score.json"] == {"score": x * 10}
    shown = subprocess.run(
        [PY, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True, check=True, timeout=600
    )
    assert "x-2" in shown.stdout and "x-3" in shown.stdout
    # the report's ablation parser on DVC's own output: the baseline commit, then each experiment's params and metric
    experiments = parse_exp_show(json.loads(shown.stdout))
    assert [(e.name, e.baseline, e.params) for e in experiments[:1]] == [("main", True, {"toy.x": 1, "toy.y": 10})]
    assert sorted((e.name, e.baseline, e.params, e.metrics) for e in experiments[1:]) == [
        (f"x-{x}", False, {"toy.x": x, "toy.y": 10}, {"score.json": {"score": x * 10}}) for x in (2, 3)
    ]
    assert [e.name for e in ablation_sweep(experiments, {"toy.x"})][1:] == [e.name for e in experiments[1:]]
    assert ablation_sweep(experiments, {"toy.y"}) == experiments[:1]  # no run changed y alone
    assert gather_experiments(tmp_path).experiments == experiments
    # the experiments' table, as Prefect's UI shows it
    table = flow_artifacts(state.state_details.flow_run_id)["sweep-x"]
    assert table.type == "table"
    assert sorted(json.loads(table.data), key=lambda row: row["experiment"]) == [
        {"experiment": "x-2", "toy.x": 2, "score.json score": 20},
        {"experiment": "x-3", "toy.x": 3, "score.json score": 30},
    ]


def test_a_grid_key_params_yaml_leaves_to_its_default_is_queued_with_its_value(tmp_path, monkeypatch):
    """pretrain.simclr.batch_size is not in params.yaml (it falls back to train.batch_size); a sweep over
    such a key must still queue, with the key added to that experiment's params."""
    _committed_param_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    flows.queue_experiment({"toy.z": 5}, "z-5", [])
    shown = subprocess.run(
        [PY, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True, check=True, timeout=600
    )
    queued = [e for row in json.loads(shown.stdout) for e in row.get("experiments") or [] if e["name"] == "z-5"]
    (experiment,) = queued
    params = experiment["revs"][0]["data"]["params"]["params.yaml"]["data"]["toy"]
    assert params == {"x": 1, "y": 10, "z": 5}
    subprocess.run([PY, "-m", "dvc", "queue", "remove", "z-5"], check=True, timeout=600, capture_output=True)


class _Ack(logging.Handler):
    """Drops `ack` in the project when the stage's first progress line reaches the task's log."""

    def __init__(self, path):
        super().__init__(logging.INFO)
        self.path = path

    def emit(self, record):
        if record.getMessage().startswith("pretrain rotation: step 1/2"):
            self.path.touch()


def test_pretrain_stage_streams_its_lines_and_publishes_progress_and_metrics(tmp_path, monkeypatch, caplog):
    """The stage waits, mid-run, until its first line is in the task's log: a flow that showed a stage's
    output only at the end would fail it. Its progress and final metrics become artifacts of the run."""
    from prefect.logging.handlers import APILogWorker

    git_dvc_init(tmp_path)
    write_pretrain_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as on a worker: the flow must see to it
    caplog.set_level(logging.INFO, logger="prefect.task_runs")
    ack = _Ack(tmp_path / "ack")
    logging.getLogger("prefect.task_runs").addHandler(ack)
    try:
        state = flows.pipeline(return_state=True)
    finally:
        logging.getLogger("prefect.task_runs").removeHandler(ack)
        APILogWorker.drain_all(timeout=30)  # INFO records travel to the server, which stops with the session
    assert state.result() == {"pretrain@rotation": "ran"}

    artifacts = flow_artifacts(state.state_details.flow_run_id)
    assert set(artifacts) == {"pretrain-rotation-progress", "pretrain-rotation"}
    progress = artifacts["pretrain-rotation-progress"]
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert progress.description == "pretrain rotation: step 2/2"
    metrics = artifacts["pretrain-rotation"]
    assert metrics.type == "table" and json.loads(metrics.data) == [
        json.loads((tmp_path / "metrics/rotation/pretrain.json").read_text())
    ]
    assert progress.task_run_id == metrics.task_run_id is not None


def _strand_in_the_queue(root, name: str) -> None:
    """Leave `name` as an interrupted sweep does: a DVC worker took it and died mid-stage, so the queue
    lists it as Running with no worker to finish it."""
    started = root / f"{name}.started"
    subprocess.run(
        [PY, "-m", "dvc", "exp", "run", "--queue", "--name", name, "-S", f"toy.hold={started}"],
        cwd=root,
        check=True,
        timeout=600,
    )
    subprocess.run([PY, "-m", "dvc", "queue", "start"], cwd=root, check=True, timeout=600)
    while not started.exists():  # the worker runs the stage; the test's timeout bounds a broken queue
        time.sleep(0.2)
    doomed = [p for p in psutil.process_iter() if p.pid != os.getpid() and _works_in(p, root)]
    for process in doomed:
        process.kill()
    psutil.wait_procs(doomed)
    status = subprocess.run(
        [PY, "-m", "dvc", "queue", "status"], cwd=root, capture_output=True, text=True, check=True, timeout=600
    )
    assert re.search(rf"{name}\s.*Running", status.stdout), status.stdout


def _works_in(process, root) -> bool:
    try:
        return Path(process.cwd()).is_relative_to(root)
    except psutil.Error:
        return False


@pytest.mark.timeout(900)  # a bound for a sweep that hangs; a working one returns in a minute
def test_sweep_waits_for_its_own_experiments_not_a_stranded_one(tmp_path, monkeypatch):
    _committed_param_project(tmp_path, hold=True)
    _strand_in_the_queue(tmp_path, "stranded")

    monkeypatch.chdir(tmp_path)  # after the kill, which spares no process working in the project
    rows = flows.sweep(grid={"toy.x": [2]}, name="x")

    by_name = {row["name"]: row for row in rows}
    assert by_name["x-2"]["metrics"]["score.json"] == {"score": 20}


def test_the_sweep_claims_its_experiments_a_lingering_worker_already_took():
    """A worker left from the previous sweep takes this sweep's first experiment when it is queued."""
    entry = lambda name, rev: SimpleNamespace(name=name, stash_rev=rev)  # noqa: E731  DVC's QueueEntry fields
    queued = [entry("b-2", "2222222aa")]
    active = [entry("b-1", "1111111aa"), entry(None, "9999999aa"), entry("old", "8888888aa")]
    done = [entry("b-0", "0000000aa"), entry("b-1", "1111111bb")]
    ours, stranded = flows.sweep_entries(["b-0", "b-1", "b-2"], queued, active, done)
    assert [(e.name, e.stash_rev) for e in ours] == [("b-2", "2222222aa"), ("b-1", "1111111aa"), ("b-0", "0000000aa")]
    assert stranded == ["9999999", "old"]
    assert flows.sweep_entries(["c"], [], active, done) == ([], ["b-1", "9999999", "old"])


def test_a_failed_experiment_fails_the_sweep_by_name(tmp_path, monkeypatch):
    _committed_param_project(tmp_path, hold=True)
    monkeypatch.chdir(tmp_path)

    missing = tmp_path / "no-such-folder" / "started"  # the stage cannot create it, and exits 1
    with pytest.raises(flows.StageFailed, match=r"experiment\(s\) hold-\S+-no-such-folder-started failed \(`dvc queue"):
        flows.sweep(grid={"toy.hold": [str(missing)]}, name="x")
