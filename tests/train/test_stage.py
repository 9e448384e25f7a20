"""`sslflow pretrain` as dvc runs it: controls, bad input (one line, exit 2), the bench on CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sslflow.errors import UserError
from sslflow.models.encoder import load_encoder
from sslflow.params import load_params

from .conftest import SMALL_MODEL


def sslflow(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sslflow", *args], cwd=cwd, capture_output=True, text=True, timeout=300
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


def pixel_knn_top1(project, source, params) -> float:
    """The kNN monitor recomputed on raw pixels, independently of sslflow's readers: bank = the 1% subset's
    images, queries = the first val samples in shard order (read from the tars), pixels from the idx source."""
    import tarfile

    from tests.conftest import read_idx

    def pixels(split: str, prefix: str, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0
        labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        index = [int(key.split("_")[1]) for key in keys]
        x = (images[index] - params.augment.mean[0]) / params.augment.std[0]
        return x / np.linalg.norm(x, axis=1, keepdims=True), labels[index]

    bank_keys = (project / "data/shards/subsets/1pct.txt").read_text().split()
    val_keys: list[str] = []
    for tar in sorted((project / "data/shards/val").glob("shard-*.tar")):
        with tarfile.open(tar) as members:
            val_keys += dict.fromkeys(name.split(".")[0] for name in members.getnames())
    bank, bank_labels = pixels("train", "train", bank_keys)
    query, query_labels = pixels("val", "t10k", val_keys[: params.train.knn.val_samples])
    sims = query @ bank.T
    k = min(params.train.knn.k, len(bank))
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(query), 10))
    for row, cols in enumerate(nearest):
        np.add.at(votes[row], bank_labels[cols], np.exp(sims[row, cols] / params.train.knn.temperature))
    return float((votes.argmax(1) == query_labels).mean())


def test_controls_write_encoders_the_extractor_can_load(train_project, tiny_source):
    from sslflow.stages.pretrain import run

    params = load_params("params.yaml", [*SMALL_MODEL, "train.knn.val_samples=100"])
    for method in ("raw_pixels", "random_init"):
        summary = run(params, method)
        assert summary == json.loads((train_project / f"metrics/{method}/pretrain.json").read_text())
        assert summary["steps"] == 0
        assert (train_project / f"models/{method}/last.pt").exists()  # a dvc output of every pretrain stage
        if method == "raw_pixels":  # the monitor's number, against an independent computation
            assert abs(summary["knn_top1"] - pixel_knn_top1(train_project, tiny_source, params)) <= 0.01
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
        "-S",
        "train.precision=bf16",
        "--vs-fp32",
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
    # why fed falls short of the ceiling: the batches themselves (memory-fed), or the loader's CPU time
    assert (
        result["rounds"]["memory_fed"] == [result["memory_fed_images_per_s"]] and result["memory_fed_images_per_s"] > 0
    )
    assert result["memory_ratio"] == pytest.approx(
        result["memory_fed_images_per_s"] / result["synthetic_images_per_s"], rel=1e-3
    )
    assert result["step_cpu_s"] > 0 and result["loader_cpu_s"] > 0
    assert result["ratio_bound"] == pytest.approx(
        result["step_cpu_s"] / (result["step_cpu_s"] + result["loader_cpu_s"]), rel=1e-3
    )
    assert "fed / ceiling, bound on these cores" in proc.stdout
    assert result["bf16"] is True and result["rounds"]["synthetic_fp32"] == [result["synthetic_fp32_images_per_s"]]
    assert result["bf16_speedup"] == pytest.approx(
        result["synthetic_images_per_s"] / result["synthetic_fp32_images_per_s"], rel=1e-3
    )
    assert "bf16 / fp32 ceiling" in proc.stdout
    # the step's convolutions alone: most of its FLOPs, and the bound their rate puts on it
    assert 0.5 < result["conv_share"] <= 1 and result["rounds"]["conv_flops_per_s"] == [result["conv_flops_per_s"]]
    assert result["conv_peak_fraction"] == pytest.approx(
        result["conv_flops_per_s"] / result["matmul_flops_per_s"], rel=1e-3
    )
    assert result["peak_fraction_bound"] == pytest.approx(result["conv_peak_fraction"] / result["conv_share"], rel=2e-3)
    assert result["bound_fraction"] == pytest.approx(result["peak_fraction"] / result["peak_fraction_bound"], rel=2e-3)
    assert "bound on step / matmul peak" in proc.stdout


def test_bench_ratios_keep_their_precision_however_small():
    """A loaded machine's bf16 speed-up can be 0.09: its ratio must not be rounded to 0.093."""
    from sslflow.bench.pretrain import _ratio

    assert _ratio(9.3241, 100.0) == pytest.approx(0.093241, rel=1e-3)
    assert _ratio(316.0, 100.0) == 3.16


@pytest.mark.parametrize(
    ("seconds_at_2048", "asked", "size"),
    [
        (62.4, [256, 512], 512),  # bf16 emulated on AVX2: a minute a 2048 call, so 512 (~1 s)
        (0.097, [256, 512, 1024], 2048),  # fp32 on the same cores
        (0.006, [256, 512, 1024], 2048),  # bf16 on AMX
    ],
)
def test_the_matmul_peak_is_timed_at_a_size_that_takes_long_enough(seconds_at_2048, asked, size):
    """The peak's matmul grows to 2048 unless a smaller call already takes a quarter second."""
    from sslflow.bench.pretrain import LONG_ENOUGH_S, square_matmul_size

    calls = []

    def seconds(n):  # a matmul's time grows as n^3
        calls.append(n)
        return seconds_at_2048 * (n / 2048) ** 3

    assert square_matmul_size(seconds, largest=2048) == size and calls == asked
    assert size == 2048 or seconds(size) >= LONG_ENOUGH_S


@pytest.mark.parametrize("name", ["gpu-fmnist.yaml", "imagenet-r50.yaml"])
def test_gpu_profiles_are_complete_params_files(name):
    from pathlib import Path

    from sslflow.schedule import method_train_cfg
    from sslflow.train.optim import scaled_lr

    params = load_params(Path(__file__).resolve().parents[2] / "params" / name)
    assert params.train.precision == "auto" and params.train.channels_last and params.train.compile
    for method in params.pretrain.methods:
        assert method_train_cfg(params.train, params.pretrain, method).epochs >= 90
    if name == "gpu-fmnist.yaml":  # PNG shards: nvJPEG takes JPEG only
        assert params.augment.gpu_decode == "cpu"
    if name.startswith("imagenet"):
        assert (params.model.arch, params.model.small_stem, params.augment.size) == ("resnet50", False, 224)
        assert params.train.optimizer == "lars" and params.train.batch_size == 4096
        assert scaled_lr(params.train, params.train.batch_size) == pytest.approx(4.8)


def test_pretrain_in_a_git_repository_without_commits_trains_without_curves(train_project, capsys):
    """`git init; dvc init; dvc repro` before a first commit: dvclive cannot read HEAD there."""
    from sslflow.stages.pretrain import run

    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=train_project, check=True, capture_output=True, timeout=600)
    params = load_params("params.yaml", [*SMALL_MODEL, "pretrain.rotation.max_steps=2", "train.knn.val_samples=50"])
    summary = run(params, "rotation")
    assert summary["steps"] == 2 and (train_project / "models/rotation/encoder.pt").exists()
    assert "dvclive/rotation: no training curves (Empty git repo" in capsys.readouterr().err
    assert not (train_project / "dvclive" / "rotation" / "metrics.json").exists()
