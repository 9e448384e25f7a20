"""`sslflow pretrain` as dvc runs it: controls, bad input (one line, exit 2), the bench on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from sslflow.errors import UserError
from sslflow.models.encoder import load_encoder
from sslflow.params import load_params

from .conftest import SMALL_MODEL


def sslflow(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(
        [sys.executable, "-m", "sslflow", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_unknown_method_is_one_line_exit_2(train_project):
    from sslflow.methods.registry import names

    proc = sslflow("pretrain", "--method", "swav", cwd=train_project)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"sslflow pretrain: error: --method swav: unknown method (known: {', '.join(names())})"
    ]
    assert {"simclr", "rotation", "relpos", "exemplar", "supervised", "random_init"} <= set(names())
    assert not (train_project / "models").exists()


def test_methods_listed_twice_are_refused(train_project):
    with pytest.raises(UserError, match=r"pretrain.methods: Value error, listed twice: simclr"):
        load_params("params.yaml", ["pretrain.methods=[simclr,rotation,simclr]"])


def test_every_default_method_has_a_section():
    """dvc.yaml makes pretrain.<method> a param of each stage: it must exist in params.yaml."""
    from pathlib import Path

    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    assert all(method in raw["pretrain"] for method in raw["pretrain"]["methods"])


def test_bf16_on_cpu_is_refused(train_project):
    from sslflow.stages.pretrain import run

    with pytest.raises(UserError, match="train.precision: bf16 autocast is for GPUs"):
        run(load_params("params.yaml", [*SMALL_MODEL, "train.precision=bf16", "train.device=cpu"]), "rotation")


def test_controls_write_encoders_the_extractor_can_load(train_project):
    from sslflow.stages.pretrain import run

    params = load_params("params.yaml", [*SMALL_MODEL, "train.knn.val_samples=100"])
    for method in ("raw_pixels", "random_init"):
        summary = run(params, method)
        assert summary == json.loads((train_project / f"metrics/{method}/pretrain.json").read_text())
        assert 0.0 <= summary["knn_top1"] <= 1.0 and summary["steps"] == 0
        assert (train_project / f"models/{method}/last.pt").exists()  # a dvc output of every pretrain stage
    pixels, info = load_encoder(train_project / "models/raw_pixels/encoder.pt")
    assert info["out_dim"] == 784 and pixels(torch.zeros(1, 1, 28, 28)).shape == (1, 784)
    backbone, info = load_encoder(train_project / "models/random_init/encoder.pt")
    assert info["backbone_name"] == "ResNet-18 (0.125x, small stem)" and info["out_dim"] == 64
    torch.manual_seed(params.seed)  # the untrained backbone is the one every method starts from
    from sslflow.models.backbone import build_backbone

    fresh = build_backbone(params.model, 1)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), backbone.state_dict().values()))


@pytest.mark.slow
def test_bench_pretrain_runs_on_cpu(train_project):
    proc = sslflow(
        "bench",
        "pretrain",
        "-S",
        "model.width=0.125",
        "--batch",
        "32",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--json",
        "bench.json",
        cwd=train_project,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((train_project / "bench.json").read_text())
    assert result["device"].startswith("cpu") and result["batch"] == 32
    for key in ("synthetic_images_per_s", "loader_fed_images_per_s", "loader_images_per_s"):
        assert result[key] > 0
    assert result["ratio"] == pytest.approx(
        result["loader_fed_images_per_s"] / result["synthetic_images_per_s"], rel=1e-3
    )
    assert "ratio fed / ceiling" in proc.stdout


@pytest.mark.parametrize("name", ["gpu-fmnist.yaml", "imagenet-r50.yaml"])
def test_gpu_profiles_are_complete_params_files(name):
    from pathlib import Path

    from sslflow.train.config import method_train_cfg
    from sslflow.train.optim import scaled_lr

    params = load_params(Path(__file__).resolve().parents[2] / "params" / name)
    assert params.train.precision == "auto" and params.train.channels_last and params.train.compile
    for method in params.pretrain.methods:
        assert method_train_cfg(params.train, params.pretrain, method).epochs >= 90
    if name.startswith("imagenet"):
        assert (params.model.arch, params.model.small_stem, params.augment.size) == ("resnet50", False, 224)
        assert params.train.optimizer == "lars" and params.train.batch_size == 4096
        assert scaled_lr(params.train, params.train.batch_size) == pytest.approx(4.8)


def test_pretrain_in_a_git_repository_without_commits_trains_without_curves(train_project, capsys):
    """`git init; dvc init; dvc repro` before a first commit: dvclive cannot read HEAD there."""
    from sslflow.stages.pretrain import run

    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=train_project, check=True, capture_output=True)
    params = load_params("params.yaml", [*SMALL_MODEL, "pretrain.rotation.max_steps=2", "train.knn.val_samples=50"])
    summary = run(params, "rotation")
    assert summary["steps"] == 2 and (train_project / "models/rotation/encoder.pt").exists()
    assert "dvclive/rotation: no training curves (Empty git repo" in capsys.readouterr().err
    assert not (train_project / "dvclive" / "rotation" / "metrics.json").exists()
