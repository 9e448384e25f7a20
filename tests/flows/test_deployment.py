"""prefect.yaml's deployment served on a local process work pool: a worker started here runs it to completion."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.flows.conftest import git_dvc_init
from tests.flows.projects import runs_log, write_project
from tests.processes import free_port

REPO = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect", "--no-prompt"]


@pytest.fixture
def prefect_server(tmp_path):
    """A real `prefect server start` on loopback with its own home; yields the environment that targets it."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("prefect server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_deployment_runs_on_a_process_worker(tmp_path, prefect_server):
    project = tmp_path / "project"
    project.mkdir()
    git_dvc_init(project)
    write_project(project)
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    env = {**prefect_server, "SSLFLOW_ROOT": str(project), "SSLFLOW_POOL": "sslflow-test"}

    def prefect(*args, timeout=300):
        proc = subprocess.run([*PREFECT, *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    prefect("work-pool", "create", "sslflow-test", "--type", "process")
    prefect("deploy", "--name", "pipeline")
    prefect("deployment", "run", "sslflow-pipeline/pipeline")
    prefect("worker", "start", "--pool", "sslflow-test", "--run-once", timeout=600)

    runs = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, json\n"
            "from prefect.client.orchestration import get_client\n"
            "async def main():\n"
            "    async with get_client() as client:\n"
            "        runs = await client.read_flow_runs()\n"
            "        print(json.dumps([[r.name, r.state.type.value] for r in runs]))\n"
            "asyncio.run(main())\n",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    states = json.loads(runs.stdout.strip().splitlines()[-1])
    assert [state for _, state in states] == ["COMPLETED"], states
    assert runs_log(project) == ["join", "left", "make", "right"]
    assert (project / "d.txt").read_text() == "make\nleft\nmake\nright\njoin\n"
