"""What only a CUDA machine can run: DALI's GPU ops and nvJPEG, bf16 + compile on the GPU, NCCL and SyncBN.

Marked `gpu` and deselected without CUDA (`pytest -m gpu` selects them;
benchmarks/gpu_checks.sh runs them before its measurements). The two-process
tests need two GPUs (NCCL refuses two ranks on one device). Everything the CPU
can stand in for runs in the ordinary suite (tests/train/test_gpu_paths_on_cpu.py).
"""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
pytest.importorskip("nvidia.dali")

from sslflow.augment.loader import make_loader  # noqa: E402
from tests.augment.conftest import collect, params_in  # noqa: E402
from tests.augment.test_backends_agree import assert_same_distribution  # noqa: E402
from tests.conftest import make_project, shard_in  # noqa: E402
from tests.data.imagetrees import make_imagefolder  # noqa: E402
from tests.processes import free_port  # noqa: E402

CUDA = torch.device("cuda", 0)


def _views(params, device, kind="simclr", name="view1") -> torch.Tensor:
    loader = make_loader(params, kind=kind, batch_size=100, shuffle=False, drop_last=False, device=device)
    return collect(loader)[name].float().cpu()


def test_dali_gpu_views_agree_with_cpu_views(tiny_project, monkeypatch):
    """The same spec on the GPU pipeline (raw pixels copied to the GPU, ops there) and the CPU one."""
    monkeypatch.chdir(tiny_project)
    params = params_in(tiny_project, "augment.backend=dali", "augment.gpu_decode=cpu")
    stats = []
    for device in ("cpu", CUDA):
        views, sources = _views(params, device).flatten(1), _views(params, device, "eval", "image").flatten(1)
        log_std_ratio = torch.log(views.std(1) + 1e-3) - torch.log(sources.std(1) + 1e-3)
        change = (views - sources).abs().mean(1)
        stats.append(torch.stack([views.mean(1) - sources.mean(1), log_std_ratio, change], 1).double())
    assert_same_distribution(*stats)


@pytest.mark.parametrize("decode", ["mixed", "cpu"])
def test_raw_shards_on_the_gpu_need_no_decoder(tiny_project, monkeypatch, decode):
    """Fashion-MNIST's raw pixels go to the GPU by .gpu() whatever gpu_decode says: the eval view equals the CPU's."""
    monkeypatch.chdir(tiny_project)
    params = params_in(tiny_project, "augment.backend=dali", f"augment.gpu_decode={decode}")
    loader = make_loader(params, kind="eval", split="val", batch_size=64, shuffle=False, drop_last=False, device=CUDA)
    gpu = collect(loader)
    assert gpu["image"].device.type == "cuda"
    cpu = collect(make_loader(params, kind="eval", split="val", batch_size=64, shuffle=False, drop_last=False))
    assert gpu["key"] == cpu["key"]
    # the same pixels through the GPU's resize and normalise: within a grey level (float rounding)
    assert (gpu["image"].cpu() - cpu["image"]).abs().max() * params.augment.std[0] * 255 <= 1.0


def test_colour_jitter_on_the_gpu_equals_the_cpu(tiny_project, monkeypatch):
    """Jitter alone (random order, per-image contrast pivot): the same draws, the same pixels up to rounding."""
    monkeypatch.chdir(tiny_project)
    params = params_in(
        tiny_project,
        "augment.backend=dali",
        "augment.gpu_decode=cpu",
        "augment.channels=3",
        "augment.simclr.ops=[{op: color_jitter, p: 1.0}]",
    )
    cpu, gpu = _views(params, "cpu"), _views(params, CUDA)
    std = params.augment.std[0]
    assert (cpu - gpu).abs().max() * std * 255 <= 2.0


def test_mixed_decoder_reads_jpeg_shards(tmp_path, monkeypatch):
    source = make_imagefolder(tmp_path / "source", train_per_class=40, val_per_class=10)
    project = make_project(tmp_path / "project", {"source": str(source), "layout": "imagefolder", "class_names": None})
    shard_in(project)
    monkeypatch.chdir(project)
    images = {}
    for decode in ("mixed", "cpu"):
        params = params_in(project, "augment.backend=dali", "augment.size=32", f"augment.gpu_decode={decode}")
        loader = make_loader(
            params, kind="eval", split="val", batch_size=8, shuffle=False, drop_last=False, device=CUDA
        )
        batch = collect(loader)
        assert batch["image"].device.type == "cuda"
        assert batch["image"].is_contiguous(memory_format=torch.channels_last)
        images[decode] = batch["image"].cpu()
    # nvJPEG and libjpeg-turbo round differently: a few levels at most, on average far less
    assert (images["mixed"] - images["cpu"]).abs().mean() * 0.229 * 255 < 2.0


def test_bf16_compiled_training_on_the_gpu(tiny_project, tmp_path, monkeypatch):
    from sslflow.params import load_params
    from sslflow.stages.pretrain import run
    from tests.train.conftest import SMALL_MODEL, make_train_project

    monkeypatch.chdir(make_train_project(tmp_path / "project", tiny_project))
    overrides = ["train.device=cuda", "train.precision=auto", "train.compile=true", "train.batch_size=64"]
    for method in ("simclr", "rotation"):
        params = load_params("params.yaml", [*SMALL_MODEL, *overrides, f"pretrain.{method}.max_steps=3"])
        summary = run(params, method)
        assert summary["steps"] == 3 and summary["final_loss"] == summary["final_loss"]


# ---- two GPUs: NCCL gather and SyncBN -------------------------------------------------------


def _nccl_rank(rank: int, port: int, results) -> None:
    import torch.distributed as dist
    from torch import nn

    from sslflow.methods.losses import nt_xent
    from tests.train.test_ntxent import LOCAL_N, TAU, WORLD, _global_inputs

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=WORLD)
    try:
        x1, x2, _ = _global_inputs()
        part = slice(rank * LOCAL_N, (rank + 1) * LOCAL_N)
        z1 = x1[part].float().cuda().requires_grad_()
        z2 = x2[part].float().cuda().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = nt_xent(z1, z2, TAU)
        loss.backward()
        bn = nn.SyncBatchNorm(3, momentum=1.0).cuda()
        values = torch.arange(WORLD * 4 * 3, dtype=torch.float32).view(WORLD * 4, 3, 1, 1)
        bn(values[rank * 4 : (rank + 1) * 4].cuda())
        results[rank] = (loss.item(), z1.grad.cpu(), bn.running_mean.cpu(), values.mean(dim=(0, 2, 3)))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs a GPU per rank")
def test_nccl_gather_and_syncbn_see_the_global_batch():
    import torch.multiprocessing as mp

    from tests.train.test_ntxent import LOCAL_N, TAU, WORLD, _global_inputs, reference_loss

    x1, x2, _ = _global_inputs()
    g1, g2 = x1.float().requires_grad_(), x2.float().requires_grad_()
    expected = reference_loss(g1, g2, TAU)
    (grad1,) = torch.autograd.grad(expected, (g1,))
    results = mp.Manager().dict()
    mp.start_processes(_nccl_rank, args=(free_port(), results), nprocs=WORLD, start_method="spawn", join=True)
    for rank in range(WORLD):
        loss, z1_grad, running_mean, global_mean = results[rank]
        assert abs(loss - expected.item()) < 1e-4
        torch.testing.assert_close(z1_grad / WORLD, grad1[rank * LOCAL_N : (rank + 1) * LOCAL_N], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(running_mean, global_mean)
