"""Atomic outputs get the permissions of a normal write, and leftovers of killed writers are swept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sslflow.atomic import atomic_dir, atomic_file, atomic_path, write_json


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_finished_outputs_have_umask_permissions(tmp_path, umask_022):
    with atomic_dir(tmp_path / "shards") as tmp:
        (tmp / "a.txt").write_text("a")
    with atomic_file(tmp_path / "raw.bin") as fh:
        fh.write(b"x")
    with atomic_path(tmp_path / "arrays.npz") as tmp:
        np.savez(tmp, a=np.zeros(2))
    write_json(tmp_path / "metrics.json", {"top1": 0.5})
    assert mode(tmp_path / "shards") == 0o755
    assert [mode(tmp_path / n) for n in ("raw.bin", "arrays.npz", "metrics.json")] == [0o644] * 3


def test_torch_save_through_atomic_path_gives_the_same_bytes_for_the_same_weights(tmp_path):
    """torch.save names its zip's root folder after the path it gets: a random temporary name
    would make equal weights hash differently, and DVC rerun everything downstream."""
    import torch

    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        with atomic_path(tmp_path / name / "encoder.pt") as tmp:
            torch.save(weights, tmp)
    assert (tmp_path / "a/encoder.pt").read_bytes() == (tmp_path / "b/encoder.pt").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["encoder.pt"]  # no temporary left


def test_leftovers_of_a_killed_writer_are_swept_and_a_live_ones_kept(tmp_path):
    """A child process opens atomic_dir and is SIGKILLed inside it; the next write of the same path sweeps."""
    code = (
        "import os, sys\nfrom sslflow.atomic import atomic_dir\n"
        "with atomic_dir(sys.argv[1]) as tmp:\n    (tmp / 'half').write_text('x')\n    os.kill(os.getpid(), 9)\n"
    )
    dest = tmp_path / "features"
    subprocess.run([sys.executable, "-c", code, str(dest)], check=False, timeout=600)
    left = list(tmp_path.glob(".features.tmp-*"))
    assert len(left) == 1 and (left[0] / "half").exists()
    with atomic_dir(dest) as tmp:
        live = list(tmp_path.glob(".features.tmp-*"))
        assert live == [tmp], "the dead writer's folder is gone, this live one is kept"
        (tmp / "whole").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]
    assert [p.name for p in dest.iterdir()] == ["whole"]
