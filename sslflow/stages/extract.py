"""Run a method's frozen encoder over the train and val shards: data/features/<method>/{train,val}.npz.

Eval views only (resize + centre crop), every sample once in shard order, on the
GPU when there is one. The encoder's fingerprint goes into each file so the
`linear` and `lowlabel` stages refuse features made by another encoder. Under
`eval.split: val` only train.npz is made: the validation slice's rows are in it,
and the test split is not read (sslflow/eval/split.py).
"""

from __future__ import annotations

import argparse
import time

from sslflow import paths
from sslflow.methods.registry import names
from sslflow.params import Params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=names(), help="whose encoder to run")


def run(params: Params, method: str) -> dict[str, int]:
    """Write both splits' features atomically (the folder appears whole or not at all); return rows per split."""
    from sslflow.atomic import atomic_dir
    from sslflow.augment.loader import make_loader
    from sslflow.data.manifest import check_shard_sizes, load_manifest
    from sslflow.errors import UserError
    from sslflow.eval.device import default_device
    from sslflow.eval.features import FeatureWriter, extract
    from sslflow.eval.split import eval_split
    from sslflow.models.encoder import load_encoder, read_encoder
    from sslflow.models.heads import head_layers_to_keep
    from sslflow.precision import use_bf16

    cfg = params.eval.extract
    device = default_device()
    encoder_path = paths.encoder(method)
    head_layers = head_layers_to_keep(cfg.head_layers, read_encoder(encoder_path).get("head_cfg"))
    encoder, info = load_encoder(encoder_path, head_layers=head_layers, device=device)
    if info["image_size"] != params.augment.size:
        raise UserError(
            f"{encoder_path}: trained on {info['image_size']} px views but augment.size is {params.augment.size} "
            f"(rerun `sslflow pretrain --method {method}`)"
        )
    manifest = load_manifest(paths.SHARDS)
    splits = eval_split(params).shard_splits
    check_shard_sizes(manifest, paths.SHARDS, splits)
    meta = {
        "fingerprint": info["fingerprint"],
        "head_layers": head_layers,
        "backbone": info.get("backbone_name") or info["model"]["arch"],
        "params_m": float(info.get("params_m") or 0.0),
    }
    rows = {}
    bf16 = use_bf16(params.train.precision, device)
    start = time.perf_counter()
    with atomic_dir(paths.FEATURES / method) as tmp:
        for split in splits:
            loader = make_loader(
                params,
                kind="eval",
                split=split,
                batch_size=cfg.batch_size,
                shuffle=False,
                drop_last=False,
                device=device,
            )
            total = manifest["splits"][split]["count"]
            writer = FeatureWriter(
                tmp / f"{split}.npz", total=total, dtype=cfg.dtype, meta=meta, desc=str(paths.shard_dir(split))
            )
            rows[split] = extract(encoder, loader, writer, device=device, bf16=bf16)
            dim = writer.dim
    took = time.perf_counter() - start
    where = f", after {head_layers} head layer(s)" if head_layers else ""
    shapes = ", ".join(f"{split} {n} x {dim}" for split, n in rows.items())
    print(f"{paths.FEATURES / method}: {shapes}{where} on {device} ({took:.1f} s)")
    return rows
