"""No room while writing shards: one line naming the output, exit 2, nothing half-written.

Two ways to run out, so that the test runs in any container: a 2 MiB tmpfs (a real full disk,
ENOSPC; needs CAP_SYS_ADMIN) and a file-size limit (RLIMIT_FSIZE, EFBIG; needs nothing). Where
mounting is refused, the tmpfs case runs on the file-size limit too.
"""

from __future__ import annotations

import resource
import subprocess

import pytest

from tests.conftest import make_project

from .conftest import ENV, SSLFLOW, one_error_line, temp_leftovers

FILE_LIMIT = 2**20  # bytes; the shards of the tiny source are 2 MiB each here


def _limit_file_size() -> None:
    """Run in the child (preexec_fn): no file may grow past FILE_LIMIT; Python ignores SIGXFSZ, so writes fail EFBIG."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture(params=["tmpfs", "file-size-limit"])
def no_room(request, tmp_path):
    """(folder to work in, how the shard stage must be started, the error's reason)."""
    if request.param == "tmpfs":
        mount = tmp_path / "disk"
        mount.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, timeout=600
        )
        if mounted.returncode == 0:
            try:
                yield mount, None, "No space left on device"
            finally:
                subprocess.run(["umount", "-l", str(mount)], check=False, timeout=600)
            return
    yield tmp_path, _limit_file_size, "File too large"


@pytest.mark.parametrize("workers", [1, 2])
def test_no_room_while_sharding(no_room, tiny_source, workers):
    """The tiny source makes ~3 MiB of shards: room runs out mid-way (in a worker with workers: 2)."""
    folder, preexec, reason = no_room
    project = make_project(folder / "p", {"source": str(tiny_source), "shard_size_mb": 2, "workers": workers})
    result = subprocess.run(
        [SSLFLOW, "shard"], cwd=project, env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=preexec
    )
    message = one_error_line(result, "sslflow shard")
    assert message == f"data/shards: {reason} while writing it; nothing was written"
    assert not (project / "data/shards").exists()
    assert temp_leftovers(project) == []
    assert list((project / "data").iterdir()) == []
