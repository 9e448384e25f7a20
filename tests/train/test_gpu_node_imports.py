"""What a GPU node runs needs no DVC, Prefect or dvclive: such a node often carries only torch, DALI and sslflow.

Each check runs in a fresh interpreter whose `import dvc`, `import prefect`, `import dvclive` (and
scmrepo, dvclive's git layer) raise ImportError, as on a machine where they are not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SMALL_MODEL

BLOCKED = ("dvc", "dvclive", "prefect", "scmrepo")
PREAMBLE = f"import sys\nfor name in {BLOCKED!r}:\n    sys.modules[name] = None  # import raises ImportError\n"
REPO = Path(__file__).resolve().parents[2]


def _run_blocked(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PREAMBLE + code],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )


def _cli_blocked(args: list[str], cwd: Path) -> str:
    """`sslflow ARGS` in a blocked interpreter, which must succeed; its stderr."""
    done = _run_blocked(f"from sslflow.cli import main\nsys.exit(main({args!r}))\n", cwd)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_lever_changes_the_loader_only():
    from sslflow.bench.pretrain import _levers
    from sslflow.errors import UserError
    from sslflow.params import load_params

    params = load_params(REPO / "params.yaml")
    levers = _levers(params, ["cpu:augment.gpu_decode=cpu", "cpu:augment.prefetch=4"])
    assert (levers["cpu"].augment.gpu_decode, levers["cpu"].augment.prefetch) == ("cpu", 4)
    assert levers["cpu"].model == params.model and levers["cpu"].train == params.train
    with pytest.raises(UserError, match=r"^--lever wide:model.width=2: only augment\.\* keys"):
        _levers(params, ["wide:model.width=2"])
    with pytest.raises(UserError, match="^--lever prefetch=4: expected NAME:KEY=VALUE$"):
        _levers(params, ["prefetch=4"])
    with pytest.raises(UserError, match="^--lever bad: augment.prefetch"):
        _levers(params, ["bad:augment.prefetch=0"])


def test_the_blocker_blocks(tmp_path):
    done = _run_blocked("import dvclive\n", tmp_path)
    assert done.returncode == 1 and "ModuleNotFoundError: import of dvclive halted" in done.stderr


def test_gpu_tests_import_nothing_from_dvc_prefect_or_dvclive(tmp_path):
    pytest.importorskip("nvidia.dali")
    code = (
        "import tests.gpu.test_cuda_paths\nprint(sorted(n for n in sys.modules if n.split('.')[0] in "
        + repr(BLOCKED)
        + " and sys.modules[n] is not None))\n"
    )
    done = _run_blocked(code, REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_bench_pretrain_and_pretrain_run_without_dvc_prefect_or_dvclive(train_project):
    small = [f"-S{o}" for o in [*SMALL_MODEL, "train.device=cpu", "augment.threads=1"]]
    bench = "bench pretrain --method rotation --batch 8 --steps 1 --warmup 0 --rounds 1 --shards data/shards"
    levers = ["--lever", "prefetch-1:augment.prefetch=1", "--lever", "prefetch-1:augment.threads=1"]
    _cli_blocked([*bench.split(), "--json", "bench.json", *small, *levers], train_project)
    result = json.loads((train_project / "bench.json").read_text())
    assert result["synthetic_images_per_s"] > 0 and result["step_flops_per_image"] > 0
    assert result["step_flops_per_s"] == round(result["synthetic_images_per_s"] * result["step_flops_per_image"])
    assert result["peak_fraction"] == float(f"{result['step_flops_per_s'] / result['matmul_flops_per_s']:.4g}")
    (lever,) = result["levers"]
    assert lever["lever"] == "prefetch-1" and lever["overrides"] == ["augment.prefetch=1", "augment.threads=1"]
    assert lever["loader_fed_images_per_s"] == result["rounds"]["fed[prefetch-1]"][0] > 0

    steps = ["-Spretrain.rotation.max_steps=2", "-Strain.batch_size=16", "-Strain.knn.val_samples=32"]
    stderr = _cli_blocked(["pretrain", "--method", "rotation", *small, *steps], train_project)
    curves_off = [line for line in stderr.splitlines() if "no training curves" in line]
    assert curves_off == ["dvclive/rotation: no training curves (dvclive is not installed)"], stderr
    assert json.loads((train_project / "metrics/rotation/pretrain.json").read_text())["steps"] == 2
    assert not (train_project / "dvclive").exists()
