"""An exported encoder folder: config.json, backbone.safetensors (+ head.safetensors) and encoder.onnx.

The config comes from the encoder file and the params `extract` reads (the eval
view, the precision, the features' dtype and head layers), so the folder
reproduces the stored features without the project; `trained_with` carries the
params that shaped the weights, for the record.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from sslflow.eval.device import default_device
from sslflow.models.heads import head_layers_to_keep, projection_head
from sslflow.portable import files as portable
from sslflow.portable.onnx_file import write_onnx
from sslflow.precision import use_bf16


def encoder_config(params, payload: dict) -> dict:
    """config.json for an encoder file under these params, as `extract` on this machine would score it."""
    cfg = params.augment
    preprocess = portable.eval_preprocess(cfg.size, cfg.eval.crop_frac, cfg.mean, cfg.std, payload["in_channels"])
    method = payload["method"]
    trained_with = {
        "seed": params.seed,
        "model": params.model.model_dump(),
        "train": params.train.model_dump(),
        "pretrain": getattr(params.pretrain, method).model_dump() if hasattr(params.pretrain, method) else None,
        "augment": cfg.model_dump(mode="json"),
    }
    head_layers = 0
    if method != portable.RAW_PIXELS:
        head_layers = head_layers_to_keep(params.eval.extract.head_layers, payload.get("head_cfg"))
    return portable.portable_config(
        payload,
        preprocess=preprocess,
        precision="bf16" if use_bf16(params.train.precision, default_device()) else "fp32",
        features_dtype=params.eval.extract.dtype,
        head_layers=head_layers,
        trained_with=trained_with,
    )


def frozen_network(payload: dict, config: dict) -> nn.Module:
    """The network config.json describes, with the encoder file's weights (and head layers), in eval mode."""
    network = portable.build_network(config)
    if config["architecture"] != "flatten":
        network.load_state_dict(payload["backbone"], strict=True)
    head = _head_prefix(payload, config)
    if head is not None:
        network = nn.Sequential(network, head)
    return network.eval().requires_grad_(False)


def write_bundle(folder: Path, payload: dict, config: dict) -> float:
    """Write the folder's files into `folder` (the caller makes it atomic); the ONNX check's max abs difference."""
    network = frozen_network(payload, config)
    backbone = network[0] if config["head_layers"] else network
    portable.save_tensors(folder / portable.WEIGHTS, backbone.state_dict(), config)
    if config["head_layers"]:
        portable.save_tensors(folder / portable.HEAD_WEIGHTS, network[1].state_dict(), config)
    portable.write_config(folder / portable.CONFIG, config)
    return write_onnx(folder / portable.ONNX, network, config)


def _head_prefix(payload: dict, config: dict) -> nn.Module | None:
    if not config["head_layers"]:
        return None
    head = projection_head(**payload["head_cfg"])
    head.load_state_dict(payload["head"])
    return head[: config["head_layers"]]
