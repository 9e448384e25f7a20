"""`sslflow.load_encoder`: an encoder as a plain module that maps pictures to the features `extract` wrote.

What it reads, in order of preference:

- an exported folder (`sslflow export`: config.json + backbone.safetensors), which
  needs only torch, torchvision and safetensors: no DVC, Prefect, DALI or dvclive,
  and not the project's params.yaml;
- an sslflow encoder file, or the folder holding it (``models/<method>``), inside
  a project: its eval view and precision then come from the project's params.yaml,
  as the `extract` stage reads them.

The module is in eval mode with gradients off; it takes uint8 (B, H, W, C) or
(B, H, W) grey pictures, or float (B, C, H, W) in [0, 1], resizes, crops and
normalises them as the eval view does, and runs the network in the precision the
features were extracted in (bf16 autocast where `extract` used it), so its output
equals the stored features up to their float16 rounding.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from sslflow.errors import UserError
from sslflow.portable import files as portable
from sslflow.portable.preprocess import EvalPreprocess


class FrozenEncoder(nn.Module):
    """Pictures -> features: the eval view, then the network, in the precision `extract` used."""

    def __init__(self, network: nn.Module, config: dict, bf16: bool) -> None:
        super().__init__()
        self.preprocess = EvalPreprocess(config["preprocess"], config["in_channels"])
        self.network = network
        self.config = config
        self.bf16 = bf16

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images.to(self.preprocess.mean.device))
        # channels-last and autocast as `extract` runs the network (sslflow/eval/features.py)
        x = x.contiguous(memory_format=torch.channels_last)
        cast = torch.autocast(x.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with cast:
            return self.network(x).float()


def load_encoder(
    path: Path | str, *, precision: str | None = None, device: str | torch.device = "cpu"
) -> FrozenEncoder:
    """The encoder at `path` (an exported folder, encoder.pt, or models/<method>), frozen, on `device`.

    precision: None = as the features were extracted (config.json's
    "precision"), "fp32" or "bf16" to choose. Bad input raises UserError naming
    the file.
    """
    path = Path(path)
    if path.is_dir() and (path / portable.CONFIG).is_file() or path.name in (portable.CONFIG, portable.WEIGHTS):
        folder = path if path.is_dir() else path.parent
        config, network = _from_export(folder)
    else:
        config, network = _from_project(path / "encoder.pt" if path.is_dir() else path)
    if precision not in (None, "fp32", "bf16"):
        raise ValueError(f"precision: None, 'fp32' or 'bf16', not {precision!r}")
    bf16 = (precision or config["precision"]) == "bf16"
    encoder = FrozenEncoder(network, config, bf16)
    return encoder.to(device).eval().requires_grad_(False)


def _from_export(folder: Path) -> tuple[dict, nn.Module]:
    config = portable.read_config(folder / portable.CONFIG)
    network = portable.build_network(config)
    weights = folder / config["files"]["weights"]
    portable.load_weights(network, portable.load_tensors(weights), weights)
    head = portable.head_prefix(config)
    if head is not None:
        head_file = folder / config["files"]["head"]
        portable.load_weights(head, portable.load_tensors(head_file), head_file)
        network = nn.Sequential(network, head)
    return config, network


def _from_project(encoder_file: Path) -> tuple[dict, nn.Module]:
    """An encoder.pt read with its project's params.yaml: the eval view and precision `extract` used."""
    from sslflow.models.encoder import read_encoder
    from sslflow.params import load_params
    from sslflow.portable.bundle import encoder_config, frozen_network

    params_file = _project_params(encoder_file)
    payload = read_encoder(encoder_file)
    params = load_params(params_file, [])
    config = encoder_config(params, payload)
    return config, frozen_network(payload, config)


def _project_params(encoder_file: Path) -> Path:
    for folder in encoder_file.resolve().parents:
        if (folder / "params.yaml").is_file():
            return folder / "params.yaml"
    raise UserError(
        f"{encoder_file}: no params.yaml above it to read the eval view from; load an exported folder "
        f"(`sslflow export`) instead"
    )
