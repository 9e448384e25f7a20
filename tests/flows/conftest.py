"""Prefect runs on its embedded server with a private home, so tests leave no state behind.

The environment is set when this file is imported, before any test module imports
prefect: Prefect reads its settings from the environment at import.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="sslflow-prefect-")
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
# A loaded 2-core CI machine can take longer than Prefect's default 20 s to start the server.
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# Stage commands (`sslflow ...`, `dvc ...`) resolve to this interpreter's scripts, as under `make test`.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture(scope="session", autouse=True)
def embedded_server():
    yield
    _stop_embedded_servers()


def _stop_embedded_servers() -> None:
    """Stop Prefect's temporary server while pytest still owns the output streams it logs to."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()


def git_dvc_init(root: Path) -> None:
    """A project must be a git + DVC repository for stages, locks and experiments."""
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "ci@sslflow"],
        ["git", "config", "user.name", "sslflow ci"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        [sys.executable, "-m", "dvc", "config", "core.analytics", "false"],
    ):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True, timeout=600)


def flow_artifacts(flow_run_id) -> dict:
    """A flow run's artifacts by key, read back from the Prefect API (as the UI reads them)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    where = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return {artifact.key: artifact for artifact in client.read_artifacts(artifact_filter=where)}
