"""Export encoders for use outside sslflow: exports/<method>/{config.json, backbone.safetensors, encoder.onnx}.

`sslflow export` (the DVC stage) exports every method of pretrain.methods in one
process, so the pipeline pays torch's import once, not once a method; `sslflow
export --method M [--to DIR]` exports one. Each folder appears whole or not at
all, and its ONNX file has been checked against PyTorch with ONNX Runtime.
sslflow/portable/files.py says what the files hold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sslflow import paths
from sslflow.methods.registry import names
from sslflow.params import Params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method", action="append", choices=names(), help="whose encoder (repeatable; default: pretrain.methods)"
    )
    parser.add_argument("--to", default=None, help="output folder (one method only; default: exports/<method>)")


def run(params: Params, method: list[str] | None = None, to: str | None = None) -> dict[str, Path]:
    """Export each method's encoder; the folder of each."""
    from sslflow.errors import UserError

    methods = method or list(params.pretrain.methods)
    if to is not None and len(methods) != 1:
        raise UserError(f"--to {to}: give exactly one --method with --to")
    return {m: export_method(params, m, Path(to) if to else paths.export(m)) for m in methods}


def export_method(params: Params, method: str, dest: Path) -> Path:
    from sslflow.atomic import atomic_dir
    from sslflow.errors import UserError
    from sslflow.models.encoder import read_encoder
    from sslflow.portable.bundle import encoder_config, write_bundle
    from sslflow.portable.files import CONFIG

    if dest.exists() and not (dest / CONFIG).is_file() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"{dest}: exists and is not an exported encoder folder; give an empty or new --to")
    encoder_path = paths.encoder(method)
    payload = read_encoder(encoder_path)
    if payload["image_size"] != params.augment.size:
        raise UserError(
            f"{encoder_path}: trained on {payload['image_size']} px views but augment.size is {params.augment.size} "
            f"(rerun `sslflow pretrain --method {method}`)"
        )
    config = encoder_config(params, payload)
    with atomic_dir(dest) as tmp:
        diff = write_bundle(tmp, payload, config)
    builder = f"torchvision.models.{config['torchvision']}" if config["torchvision"] else "sslflow.load_encoder"
    print(
        f"{dest}: {config['backbone'] or config['architecture']}, {config['feature_dim']} features, "
        f"loads into {builder}; ONNX checked (max abs diff {diff:.1e})"
    )
    return dest
