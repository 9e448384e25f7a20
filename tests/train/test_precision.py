"""`train.precision`: what auto resolves to, and that fine-tuning, scoring and extraction follow it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sslflow import precision
from sslflow.eval.features import FeatureWriter, extract
from sslflow.eval.finetune import evaluate, train

from .conftest import Epochs


@pytest.mark.parametrize(
    "flags, native",
    [
        ({"amx_bf16", "amx_tile", "avx512_bf16", "avx512"}, True),  # Sapphire Rapids and later
        ({"avx512_bf16", "avx512"}, True),  # Cooper Lake, AMD Zen 4 / EPYC: bf16 dot products, no AMX
        ({"amx_bf16"}, True),
        ({"avx512", "avx2"}, False),  # bf16 emulated: slower than fp32
        (set(), False),
    ],
)
def test_auto_is_bf16_on_gpus_and_on_cpus_that_multiply_bf16_natively(monkeypatch, flags, native):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.use_bf16("auto", "cuda") is True
    assert precision.use_bf16("auto", "cuda:1") is True
    assert precision.use_bf16("auto", "cpu") is native
    assert precision.use_bf16("auto", torch.device("cpu")) is native


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_an_explicit_precision_wins_over_the_hardware(monkeypatch, device):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16", "avx512_bf16"}))
    assert precision.use_bf16("bf16", device) is True
    assert precision.use_bf16("fp32", device) is False


def test_the_flags_are_torchs_cpu_capabilities():
    capabilities = torch.cpu.get_capabilities()
    assert precision.cpu_flags() == {name for name, present in capabilities.items() if present is True}
    native = bool(capabilities.get("amx_bf16")) or bool(capabilities.get("avx512_bf16"))
    assert precision.cpu_has_native_bf16() is native


class ConvNet(nn.Module):
    """A conv + linear classifier that records the dtype each convolution computed in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        self.seen.append(y.dtype)
        return self.fc(y.mean(dim=(2, 3)))


def _batches(n_batches: int = 2):
    g = torch.Generator().manual_seed(0)
    data = [
        {
            "image": torch.randn(4, 1, 8, 8, generator=g),
            "label": torch.randint(0, 3, (4,), generator=g),
            "key": [f"{b}-{i}" for i in range(4)],
        }
        for b in range(n_batches)
    ]
    return Epochs(data)


def _ce(model, batch):
    return nn.functional.cross_entropy(model(batch["image"]), batch["label"])


@pytest.mark.parametrize("bf16", [True, False])
def test_finetuning_and_scoring_run_in_the_asked_precision(bf16):
    model = ConvNet()
    train(model, _batches(), _ce, epochs=1, lr=0.1, momentum=0.9, weight_decay=0.0, desc="t", bf16=bf16)
    assert model.seen == [torch.bfloat16 if bf16 else torch.float32] * 2
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    model.seen.clear()
    top1, _ = evaluate(model, _batches(), "cpu", bf16=bf16)
    assert model.seen == [torch.bfloat16 if bf16 else torch.float32] * 2 and 0.0 <= top1 <= 1.0


@pytest.mark.parametrize("bf16", [True, False])
def test_extraction_runs_in_the_asked_precision_and_writes_float(tmp_path, bf16):
    model = ConvNet()
    meta = {"fingerprint": "f", "head_layers": 0, "backbone": "b", "params_m": 0.0}
    writer = FeatureWriter(tmp_path / "train.npz", total=8, dtype="float32", meta=meta, desc="t")
    assert extract(model, _batches(), writer, device="cpu", bf16=bf16) == 8
    assert model.seen == [torch.bfloat16 if bf16 else torch.float32] * 2
    with np.load(tmp_path / "train.npz") as f:
        assert f["features"].dtype == np.float32 and f["features"].shape == (8, 3)
