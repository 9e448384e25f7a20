"""Prefect flows over the DVC pipeline: `sslflow flow pipeline` and `sslflow flow sweep`.

DVC stays the definition of the stages and the keeper of their cache; Prefect
decides where and when they run. The `pipeline` flow reads the stage graph from
dvc.yaml, asks DVC whether each stage is up to date, runs the stage's own
command (the same `sslflow <stage>` that `dvc repro` runs) when it is not, and
records the result with `dvc commit`, so a flow and `dvc repro` never redo each
other's work. The `sweep` flow queues one DVC experiment per grid point and
gathers them with `dvc exp show`.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before Prefect reads its settings: the embedded server's telemetry heartbeat writes to its
# SQLite file while the server is still starting and prints a "database is locked" traceback
# (a lab's cluster cannot send it anywhere either). A user's own setting wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from sslflow.errors import EXIT_USER_ERROR, UserError
from sslflow.launch import stage_command
from sslflow.params import Params

# DVC takes a repository lock for status and commit; calls from concurrent tasks queue here.
_DVC_LOCK = threading.Lock()


@dataclass(frozen=True)
class Stage:
    name: str  # DVC's address: "shard", "pretrain@simclr", ...
    cmd: str
    upstream: tuple[str, ...]


class StageFailed(RuntimeError):
    """A stage command exited non-zero; the message is the stage's own last error line."""

    def __init__(self, stage: str, returncode: int, tail: str):
        super().__init__(f"{stage}: {tail}" if tail else f"{stage}: exited with {returncode}")
        self.returncode = returncode


def stage_graph(root: Path | str = ".") -> list[Stage]:
    """The stages of dvc.yaml in a topological order, with their upstream stages."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        stages = {
            s.addressing: Stage(s.addressing, s.cmd, tuple(sorted(u.addressing for u in graph.successors(s))))
            for s in graph.nodes
            if s.cmd
        }
    return _topological(stages)


def _topological(stages: dict[str, Stage]) -> list[Stage]:
    ordered, done = [], set()
    pending = deque(sorted(stages))
    while pending:
        name = pending.popleft()
        if all(u in done or u not in stages for u in stages[name].upstream):
            ordered.append(stages[name])
            done.add(name)
        else:
            pending.append(name)
    return ordered


def _dvc(*args: str) -> subprocess.CompletedProcess:
    with _DVC_LOCK:
        return subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)


def is_up_to_date(stage: str) -> bool:
    """DVC's own answer: the stage's deps, params and outs match dvc.lock."""
    proc = _dvc("status", "--json", stage)
    if proc.returncode != 0:
        raise UserError(f"dvc status {stage}: {proc.stderr.strip().splitlines()[-1] if proc.stderr else 'failed'}")
    return json.loads(proc.stdout or "{}") == {}


def _not_bad_input(task, task_run, state) -> bool:
    """Retry crashes and flaky failures, never bad input: it fails the same way every time."""
    try:
        state.result()
    except StageFailed as exc:
        return exc.returncode != EXIT_USER_ERROR
    except Exception:
        return True
    return False


def _pretrained_method(stage: Stage) -> str | None:
    """'simclr' for 'pretrain@simclr'; None for any other stage."""
    kind, _, method = stage.name.partition("@")
    return method if kind == "pretrain" and method else None


@task(task_run_name="{stage.name}", retry_condition_fn=_not_bad_input)
def run_stage(stage: Stage, params: Params) -> str:
    """Skip an up-to-date stage; otherwise run its command, forward its log as it comes, and record it in dvc.lock.

    A pretraining stage also drives a progress artifact from its progress lines and
    publishes its final metrics.
    """
    from sslflow.artifacts import StageProgress, publish_pretrain_metrics

    logger = get_run_logger()
    if is_up_to_date(stage.name):
        logger.info("%s is up to date; skipped", stage.name)
        return "skipped"
    cmd = stage_command(stage.cmd, params.launch)
    logger.info("running %s: %s", stage.name, cmd)
    method = _pretrained_method(stage)
    progress = StageProgress(method) if method else None
    tail: deque[str] = deque(maxlen=1)
    # unbuffered: a stage's stdout lines reach the task's log when printed, not when the stage ends
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    ) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                logger.info(line)
                tail.append(line)
                if progress is not None:
                    progress.see(line)
    if proc.returncode != 0:
        raise StageFailed(stage.name, proc.returncode, tail[-1] if tail else "")
    commit = _dvc("commit", "--force", stage.name)
    if commit.returncode != 0:
        raise StageFailed(stage.name, commit.returncode, commit.stderr.strip())
    if method:
        publish_pretrain_metrics(method)
    return "ran"


def _pipeline_run_name() -> str:
    """'pipeline-simclr-rotation-...': the methods given, else those params.yaml lists."""
    from prefect.runtime import flow_run

    methods = flow_run.parameters.get("methods")
    if not methods:
        try:
            from sslflow.params import load_params

            methods = load_params(flow_run.parameters.get("params_file") or "params.yaml").pretrain.methods
        except UserError:
            methods = []  # the flow itself reports the bad params file
    return "pipeline-" + "-".join(methods) if methods else "pipeline"


def stage_label(stage: Stage, params: Params) -> str:
    """A task run's name: the DVC stage, and for pretraining the method's budget, e.g.
    'pretrain@simclr (102,400 views: 400 steps, batch 128, sgd lr 0.5)'."""
    from sslflow.methods.registry import planned_steps, trains
    from sslflow.schedule import method_train_cfg

    kind, _, method = stage.name.partition("@")
    if kind != "pretrain" or not method or not trains(method):
        return stage.name
    cfg = method_train_cfg(params.train, params.pretrain, method)
    if cfg.budget_views is not None:
        budget = f"{cfg.budget_views:,} views: {planned_steps(params, method):,} steps"
    else:
        budget = f"{cfg.max_steps:,} steps" if cfg.max_steps else f"{cfg.epochs:g} epochs"
    return f"{stage.name} ({budget}, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:g})"


@flow(name="sslflow-pipeline", flow_run_name=_pipeline_run_name, log_prints=True)
def pipeline(params_file: str = "params.yaml", methods: list[str] | None = None) -> dict[str, str]:
    """Every DVC stage as a task, independent branches concurrently; returns stage -> ran|skipped.

    When the graph ends in the report, its tables become artifacts of the flow run.
    """
    from sslflow.artifacts import publish_report
    from sslflow.params import load_params

    params = load_params(params_file)
    stages = stage_graph()
    futures: dict[str, Any] = {}
    with ThreadPoolTaskRunner(max_workers=params.launch.concurrency) as runner:
        for stage in stages:
            upstream = [futures[u] for u in stage.upstream if u in futures]
            futures[stage.name] = runner.submit(
                run_stage.with_options(task_run_name=stage_label(stage, params), retries=params.launch.retries),
                {"stage": stage, "params": params},
                wait_for=upstream,
            )
        results = {name: future.result() for name, future in futures.items()}
    if "report" in results:
        publish_report()
    return results


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of a {param: [values]} grid, in a stable order."""
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def experiment_name(point: dict[str, Any]) -> str:
    """A DVC experiment name that says the params, e.g. 'batch_size-128_temperature-0.5'."""
    parts = [f"{key.split('.')[-1]}-{value}" for key, value in point.items()]
    return "_".join(parts).replace("/", "-").replace(" ", "")


def pipeline_state(root: Path | str = ".") -> list[str]:
    """What a queued experiment needs from this workspace besides its git commit: dvc.lock and the
    outputs DVC does not cache (metrics files, pretraining's resumable last.pt), those that exist.

    After a fresh clone's `make run` they are untracked, and a queued experiment starts from the
    commit alone: without dvc.lock every stage looks new, and DVC's run-cache never restores a
    stage with a persistent output, so every method would pretrain again in every experiment.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        uncached = sorted({out.def_path for stage in repo.index.stages for out in stage.outs if not out.use_cache})
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.splitlines()
    return _copyable([path for path in ["dvc.lock", *uncached] if (Path(root) / path).exists()], tracked)


def _copyable(paths: list[str], tracked: list[str]) -> list[str]:
    """DVC copies a file only into a folder the experiment's checkout has, and a folder only where
    none is: a file whose folder git does not track (metrics/simclr/, models/simclr/) goes as its folder."""
    folders = {str(p) for f in tracked for p in Path(f).parents}
    copies: list[str] = []
    for path in paths:
        folder = str(Path(path).parent)
        item = folder if folder != "." and folder not in folders else path
        if item not in copies:
            copies.append(item)
    return copies


@task(task_run_name="queue {name}")
def queue_experiment(point: dict[str, Any], name: str, copy_paths: list[str]) -> str:
    # `++`: set the key whether params.yaml spells it out or leaves it to its default (a method's
    # batch_size falls back to train's); run_sweep has already validated every key against sslflow's params
    sets = [arg for key, value in point.items() for arg in ("-S", f"++{key}={json.dumps(value)}")]
    copies = [arg for path in copy_paths for arg in ("--copy-paths", path)]
    proc = _dvc("exp", "run", "--queue", "--name", name, *sets, *copies)
    if proc.returncode != 0:
        raise UserError(f"dvc exp run --queue {name}: {proc.stderr.strip()}")
    get_run_logger().info("queued %s", name)
    return name


@task(task_run_name="run queued experiments")
def run_queue(names: list[str], jobs: int) -> None:
    """Run the queue with `jobs` DVC workers and wait for the sweep's own experiments alone.

    `dvc exp run --run-all` also waits on every task the queue lists as running, and a task whose
    worker died (an interrupted sweep) stays "Running" with no worker to finish it: the sweep would
    never return. DVC's log goes to Prefect's task log, line by line.
    """
    from dvc.repo import Repo

    logger = get_run_logger()
    with Repo(".") as repo, contextlib.redirect_stdout(_LogLines(logger)):
        queue = repo.experiments.celery_queue
        active = list(queue.iter_active())
        ours, stranded = sweep_entries(names, list(queue.iter_queued()), active, [d.entry for d in queue.iter_done()])
        if stranded:
            logger.warning(
                "not waiting for %s, running before this sweep started (`dvc queue status`; "
                "if no worker runs it any more, `dvc queue kill <name>` clears it)",
                ", ".join(stranded),
            )
        done = repo.experiments.reproduce_celery(entries=ours, jobs=jobs)
        succeeded = set(repo.experiments.get_exact_name(list(done)).values())
    failed = [name for name in names if name not in succeeded]
    if failed:
        raise StageFailed("sweep", 1, f"experiment(s) {', '.join(failed)} failed (`dvc queue logs <name>`)")


def sweep_entries(names: list[str], queued: list, active: list, done: list) -> tuple[list, list[str]]:
    """(the sweep's queue entries, the names of others running): what run_queue waits for, and what not.

    A DVC worker outlives its sweep for a moment and takes the next sweep's first experiment as
    soon as it is queued, so an experiment of this sweep may already be running, or done, when
    the sweep looks: it is still this sweep's to wait for and report. Where a name is in several
    lists, the queued or running entry is the live one.
    """
    wanted = set(names)
    ours: dict[str, Any] = {}
    for entry in [*queued, *active, *done]:
        if entry.name in wanted:
            ours.setdefault(entry.name, entry)
    stranded = [entry.name or entry.stash_rev[:7] for entry in active if entry.name not in wanted]
    return list(ours.values()), stranded


class _LogLines(io.TextIOBase):
    """A text stream that logs each complete line it is written, for DVC's console output."""

    def __init__(self, logger):
        self.logger, self.pending = logger, ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line)
        return len(text)


@task(task_run_name="gather experiments")
def gather_experiments() -> list[dict[str, Any]]:
    """One row per experiment of `dvc exp show --json`: its name, params and metrics."""
    proc = _dvc("exp", "show", "--json")
    if proc.returncode != 0:
        raise UserError(f"dvc exp show: {proc.stderr.strip()}")
    return experiment_rows(json.loads(proc.stdout))


def experiment_rows(show: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten `dvc exp show --json` into {"name", "rev", "params", "metrics"} rows, experiments only."""
    rows = []
    for commit in show:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                rows.append(
                    {
                        "name": rev.get("name") or exp.get("name"),
                        "rev": rev.get("rev"),
                        "params": {f: v.get("data", {}) for f, v in (data.get("params") or {}).items()},
                        "metrics": {f: v.get("data", {}) for f, v in (data.get("metrics") or {}).items()},
                    }
                )
    return rows


@flow(name="sslflow-sweep", flow_run_name="sweep-{name}", log_prints=True)
def sweep(grid: dict[str, list[Any]], name: str = "grid", jobs: int = 1) -> list[dict[str, Any]]:
    """Queue one DVC experiment per grid point, run them, and return every experiment's params and metrics
    (also published as a table artifact of the flow run)."""
    from sslflow.artifacts import publish_experiments

    points = grid_points(grid)
    state = pipeline_state()
    names = [queue_experiment(point, experiment_name(point), state) for point in points]
    run_queue(names, jobs)
    rows = gather_experiments()
    publish_experiments(name, rows, grid)
    return rows


# --- CLI: `sslflow flow pipeline|sweep` ---------------------------------------------------


def add_arguments_pipeline(parser) -> None:
    parser.add_argument("--methods", nargs="*", default=None, help="only label the run with these (informational)")


def run_pipeline(params: Params, *, methods: list[str] | None = None) -> None:
    _raise_clear(lambda: pipeline(params_file="params.yaml", methods=methods or list(params.pretrain.methods)))


def add_arguments_sweep(parser) -> None:
    parser.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a param and its values, e.g. pretrain.simclr.temperature=0.1,0.5 (repeatable)",
    )
    parser.add_argument("--name", default="grid", help="names the flow run")
    parser.add_argument("--jobs", type=int, default=1, help="experiments run at once")


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    import yaml

    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise UserError(f"--grid {item}: expected KEY=V1,V2,...")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def run_sweep(params: Params, *, grid: list[str], name: str, jobs: int) -> None:
    parsed = parse_grid(grid)
    from sslflow.params import load_params

    for point in grid_points(parsed):  # a bad grid stops here, before anything is queued
        load_params("params.yaml", [f"{key}={json.dumps(value)}" for key, value in point.items()])
    rows = _raise_clear(lambda: sweep(grid=parsed, name=name, jobs=jobs))
    print(json.dumps(rows, indent=2))


def _raise_clear(call):
    """A stage's bad-input failure reaches the user as that stage's one line, exit 2."""
    try:
        return call()
    except StageFailed as exc:
        if exc.returncode == EXIT_USER_ERROR:
            raise UserError(str(exc)) from None
        raise
