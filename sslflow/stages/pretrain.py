"""Pretrain one method (`sslflow pretrain --method NAME`): models/<method>/{encoder.pt,last.pt}, metrics/<method>/pretrain.json.

Rerunning the same command continues from last.pt (after a kill or a
pre-emption); --fresh ignores it. Under torchrun only rank 0 writes.
"""

from __future__ import annotations

import os
import time

from sslflow import paths
from sslflow.methods.registry import method_spec, names
from sslflow.train.summary import pretrain_summary


def add_arguments(parser) -> None:
    parser.add_argument("--method", required=True, help=f"one of: {', '.join(names())}")
    parser.add_argument("--fresh", action="store_true", help="ignore models/<method>/last.pt and start over")


def run(params, method: str, fresh: bool = False) -> dict | None:
    if not method_spec(method).trains:
        return run_control(params, method) if int(os.environ.get("RANK", "0")) == 0 else None
    from sslflow.train.export import export_encoder, write_metrics
    from sslflow.train.loop import pretrain

    result = pretrain(params, method, fresh=fresh)
    if result is None:  # not rank 0
        return None
    head, head_cfg = result.method.encoder_head()
    export_encoder(params, method, result.method.backbone, result.in_channels, head, head_cfg)
    write_metrics(method, result.summary)
    _say(method, result.summary)
    return result.summary


def run_control(params, method: str) -> dict:
    """random_init / raw_pixels: save the untrained encoder, with a kNN number for the same monitor."""
    from sslflow.augment.loader import in_channels
    from sslflow.data.manifest import check_shard_sizes, load_manifest
    from sslflow.eval.split import eval_split
    from sslflow.train.checkpoint import save_checkpoint
    from sslflow.train.distributed import pick_device
    from sslflow.train.export import export_encoder, write_metrics
    from sslflow.train.monitor import knn_monitor

    started = time.perf_counter()
    channels = in_channels(params)
    manifest = load_manifest()
    check_shard_sizes(manifest, paths.SHARDS, eval_split(params).shard_splits)
    classes = manifest["classes"]
    encoder = method_spec(method).encoder(params, channels)
    device = pick_device(params.train.device)
    knn = knn_monitor(params, encoder.to(device), device, params.train.knn, len(classes))
    payload = export_encoder(params, method, encoder.cpu(), channels)
    save_checkpoint(paths.checkpoint(method), {"method": method, "done": True})  # nothing to resume
    summary = pretrain_summary(
        method=method,
        backbone=payload["backbone_name"],
        params_m=payload["params_m"],
        epochs=0,
        steps=0,
        global_batch=0,
        views=0,
        world_size=1,
        final_loss=None,
        final_pretext_acc=None,
        knn_top1=knn,
        images_per_s=None,
        wall_s=time.perf_counter() - started,
        precision=None,
    )
    write_metrics(method, summary)
    _say(method, summary)
    return summary


def _say(method: str, summary: dict) -> None:
    """The stage's one result line: where the encoder is and what the run gave."""
    from sslflow.progress import summary_line

    line = summary_line(
        f"pretrain {method}",
        encoder=paths.encoder(method),
        steps=summary["steps"],
        loss=summary["final_loss"],
        acc=summary["final_pretext_acc"],
        knn_top1=summary["knn_top1"],
        images_per_s=summary["images_per_s"],
        wall_s=summary["wall_s"],
    )
    print(line, flush=True)
