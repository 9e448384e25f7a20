"""encoder.onnx: float pictures at the input size -> features, normalisation inside, any batch size.

Input ``images``: float32 (B, C, S, S) in [0, 1], already resized and centre-cropped
as config.json's "preprocess" says (resizing stays outside the graph: serving
stacks do it their own way). Output ``features``: float32 (B, D), the fp32
network's. Written by torch's TorchScript exporter (``dynamo=False``) at its
highest opset, 20: it needs no onnxscript and exports these ResNets, small stem,
SK and flatten included, in a fraction of a second. The file is then run
with ONNX Runtime against PyTorch on a seeded batch before it is kept.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 20  # the TorchScript exporter's highest
TOLERANCE = 1e-4  # max abs difference between ONNX Runtime and PyTorch, in units of the features' scale


class NormalisedNetwork(nn.Module):
    """(x - mean) / std, then the network: the graph the ONNX file holds."""

    def __init__(self, network: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images - self.mean) / self.std)


def write_onnx(path: Path, network: nn.Module, config: dict) -> float:
    """Export, then check with ONNX Runtime; the max abs difference (RuntimeError above TOLERANCE)."""
    graph = NormalisedNetwork(network, config["preprocess"]["mean"], config["preprocess"]["std"]).eval()
    size, channels = config["input_size"], config["in_channels"]
    example = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=["features"],
            dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
        )
    return check_onnx(path, graph, channels, size)


def check_onnx(path: Path, graph: nn.Module, channels: int, size: int) -> float:
    """ONNX Runtime's output against PyTorch's on 3 seeded pictures (a batch size the export did not see)."""
    import onnxruntime

    images = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = graph(images).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["features"], {"images": images.numpy()})[0]
    scale = max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(got - expected).max())
    if got.shape != expected.shape or diff > TOLERANCE * scale:
        raise RuntimeError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} (shape {got.shape})")
    return diff
