"""A compiler that fails never kills a run: one line, the step eager, `"compiled": false` in pretrain.json.

The failing compiler is a real torch.compile backend that raises, the way Inductor raised from
Triton on an H200; the run it breaks must end with the weights of a run that never compiled.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sslflow.params import load_params
from sslflow.train import distributed as ddp
from sslflow.train import loop
from sslflow.train.compiled import CompiledStep
from tests.processes import free_port

from .conftest import SMALL_MODEL

FAILURE = "PassManager::run failed"


def raising_backend(graph_module, example_inputs):
    raise RuntimeError(f"{FAILURE}\n(a second line the run must not print)")


def _params(compile: bool):
    return load_params(
        "params.yaml",
        [
            *SMALL_MODEL,
            "train.device=cpu",
            "train.precision=fp32",
            f"train.compile={str(compile).lower()}",
            "train.batch_size=16",
            "train.knn.val_samples=32",
            "augment.threads=1",
            "pretrain.rotation.max_steps=2",
        ],
    )


@pytest.mark.slow
def test_a_failing_compiler_leaves_the_run_eager_with_the_eager_weights(train_project, monkeypatch, capfd):
    from sslflow.stages.pretrain import run

    real_compile = torch.compile
    with monkeypatch.context() as patch:
        patch.setattr(loop.torch, "compile", lambda net: real_compile(net, backend=raising_backend))
        summary = run(_params(compile=True), "rotation", fresh=True)
    lines = [line for line in capfd.readouterr().err.splitlines() if "torch.compile" in line]
    assert len(lines) == 1 and lines[0].startswith("pretrain rotation: torch.compile failed ("), lines
    assert FAILURE in lines[0] and lines[0].endswith("; continuing eager") and "second line" not in lines[0]
    assert summary["compiled"] is False and summary["steps"] == 2
    assert json.loads((train_project / "metrics/rotation/pretrain.json").read_text())["compiled"] is False
    fallen_back = torch.load(train_project / "models/rotation/last.pt", weights_only=True)["model"]

    eager = run(_params(compile=False), "rotation", fresh=True)
    assert eager["compiled"] is False
    never_compiled = torch.load(train_project / "models/rotation/last.pt", weights_only=True)["model"]
    assert fallen_back.keys() == never_compiled.keys()
    for name in never_compiled:
        assert torch.equal(fallen_back[name], never_compiled[name]), name


# ---- two ranks: one fails, both go eager ---------------------------------------------------


def _rank_main(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        env = ddp.DistEnv(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        backend = raising_backend if rank == 1 else "eager"  # only rank 1's compiler fails

        def build(compile: bool) -> nn.Module:
            return torch.compile(model, backend=backend) if compile else model

        def step(net: nn.Module) -> float:
            loss = net(torch.ones(3, 4)).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.item()

        compiled = CompiledStep(build, True, env, f"rank {rank}")
        first = compiled.run(step, state=[model, optimizer])
        second = compiled.run(step, state=[model, optimizer])
        results[rank] = (compiled.compiled, compiled.net is model, first, second, model.weight.detach().clone())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_every_rank_goes_eager_when_one_rank_fails_to_compile():
    results = mp.Manager().dict()
    mp.start_processes(_rank_main, args=(free_port(), results), nprocs=2, start_method="spawn", join=True)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(2):
        loss = model(torch.ones(3, 4)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    for rank in range(2):
        compiled, eager_net, first, second, weight = results[rank]
        assert compiled is False and eager_net, rank
        # rank 0's compiled first step was taken back: one eager step from the same start, then another
        assert [first, second] == pytest.approx(losses, rel=1e-6), rank
        torch.testing.assert_close(weight, model.weight.detach(), rtol=0, atol=0)


def test_the_failure_line_names_the_error_under_inductors_subprocess_header():
    from sslflow.train.compiled import _first_line

    inductor = RuntimeError(
        "SubprocException: An exception occurred in a subprocess:\n\nName=triton_per_fused_0\n"
        'Traceback (most recent call last):\n  File "compiler.py", line 1\nRuntimeError: PassManager::run failed\n'
    )
    assert _first_line(inductor) == "RuntimeError: RuntimeError: PassManager::run failed"
    assert _first_line(ValueError("shape mismatch\nmore")) == "ValueError: shape mismatch"
