"""metrics/<method>/pretrain.json: its keys, written by trained methods and controls alike.

JSON has no NaN, so a number not known (a control's loss, a rate with no
training time) is null.
"""

from __future__ import annotations

import math


def pretrain_summary(
    *,
    method: str,
    backbone: str,
    params_m: float,
    epochs: float,
    steps: int,
    global_batch: int,
    views: int,
    world_size: int,
    final_loss: float | None,
    final_pretext_acc: float | None,
    knn_top1: float | None,
    images_per_s: float | None,
    wall_s: float,
    precision: str | None,
    compiled: bool = False,
) -> dict:
    """final_pretext_acc: the pretext task's accuracy (SimCLR: the positive ranked first among 2N-1);
    views: what the backbone processed, all ranks (steps x global batch x views per image), the unit
    of `train.budget_views`; precision: "bf16" or "fp32", what `train.precision` resolved to on this
    machine (None for a control that trains nothing); compiled: whether the step ran compiled
    (`train.compile`, and false where compiling failed and the run went on eager)."""
    summary = {
        "method": method,
        "backbone": backbone,
        "params_m": round(params_m, 4),
        "epochs": round(epochs, 4),
        "steps": steps,
        "global_batch": global_batch,
        "views": views,
        "world_size": world_size,
        "final_loss": final_loss,
        "final_pretext_acc": final_pretext_acc,
        "knn_top1": knn_top1,
        "images_per_s": images_per_s,
        "wall_s": round(wall_s, 2),
        "precision": precision,
        "compiled": compiled,
    }
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in summary.items()}
