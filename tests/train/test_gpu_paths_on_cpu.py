"""The GPU profiles' branches of the training loop, run on the CPU: bf16 autocast and torch.compile (inductor).

A GPU profile sets `train.precision: auto` (bf16 on a GPU) and `train.compile:
true`; on the CPU the same code runs under CPU autocast and inductor's C++
backend. Compiling on two cores is slow, so the model is the tiny ResNet and
each run takes two or three steps.
"""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch
from torch import nn

from sslflow.params import load_params
from sslflow.train import loop

from .conftest import SMALL_MODEL

GPU_PATH = [
    *SMALL_MODEL,
    "train.device=cpu",
    "train.precision=bf16",
    "train.compile=true",
    "train.batch_size=16",
    "train.checkpoint_every=1000",
    "train.knn.val_samples=32",
    "augment.threads=1",
]


@pytest.fixture
def conv_dtypes():
    """The dtype of every convolution's output while the test runs (a global forward hook, compiled code included)."""
    seen: list[torch.dtype] = []

    def record(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            seen.append(output.dtype)

    handle = nn.modules.module.register_module_forward_hook(record)
    yield seen
    handle.remove()


def _params(method: str, steps: int):
    return load_params("params.yaml", [*GPU_PATH, f"pretrain.{method}.max_steps={steps}"])


def _assert_gpu_path_ran(conv_dtypes: list, last_pt) -> None:
    assert torch._dynamo.utils.counters["frames"]["ok"] > 0  # the step ran through torch.compile
    assert conv_dtypes and set(conv_dtypes) == {torch.bfloat16}  # every convolution under autocast
    state = torch.load(last_pt, weights_only=True)["model"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())  # fp32 master weights


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)` when there are global hooks")
def test_bf16_and_compile_train_rotation_on_cpu(train_project, conv_dtypes):
    from sslflow.stages.pretrain import run

    torch._dynamo.utils.counters.clear()
    summary = run(_params("rotation", 2), "rotation")
    assert summary["steps"] == 2 and math.isfinite(summary["final_loss"])
    assert summary == json.loads((train_project / "metrics/rotation/pretrain.json").read_text())
    _assert_gpu_path_ran(conv_dtypes, train_project / "models/rotation/last.pt")


class TermAtOnce(loop.StopRequest):
    """The real SIGTERM handler, with the signal raised as soon as it is installed: the loop stops after step 1."""

    def __enter__(self):
        stop = super().__enter__()
        signal.raise_signal(signal.SIGTERM)
        return stop


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)` when there are global hooks")
def test_bf16_compiled_simclr_trains_and_resumes_to_the_uninterrupted_weights(train_project, conv_dtypes, monkeypatch):
    from sslflow.stages.pretrain import run

    params = _params("simclr", 3)
    torch._dynamo.utils.counters.clear()
    summary = run(params, "simclr", fresh=True)
    assert summary["steps"] == 3 and math.isfinite(summary["final_loss"])
    last = train_project / "models/simclr/last.pt"
    _assert_gpu_path_ran(conv_dtypes, last)
    straight = torch.load(last, weights_only=True)["model"]
    last.unlink()

    with monkeypatch.context() as patch:
        patch.setattr(loop, "StopRequest", TermAtOnce)
        with pytest.raises(SystemExit) as stopped:
            run(params, "simclr")
    assert stopped.value.code == loop.PREEMPTED_EXIT
    assert torch.load(last, weights_only=True)["position"][2] == 1

    summary = run(params, "simclr")  # continues from step 1
    assert summary["steps"] == 3
    resumed = torch.load(last, weights_only=True)["model"]
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
