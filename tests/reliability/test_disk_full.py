"""A full disk while writing shards: one line naming the output, exit 2, nothing half-written."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import make_project

from .conftest import one_error_line, sslflow, temp_leftovers


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root and CAP_SYS_ADMIN; skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_disk_full_while_sharding(small_disk, tiny_source, workers):
    """The tiny source makes ~3 MiB of shards: the disk fills mid-way (in a worker with workers: 2)."""
    project = make_project(small_disk / "p", {"source": str(tiny_source), "shard_size_mb": 0.25, "workers": workers})
    message = one_error_line(sslflow(project, "shard", timeout=120), "sslflow shard")
    assert message == "data/shards: No space left on device while writing it; nothing was written"
    assert not (project / "data/shards").exists()
    assert temp_leftovers(project) == []
    assert list((project / "data").iterdir()) == []
