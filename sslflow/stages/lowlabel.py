"""The 1% / 10% label protocol for one method -> metrics/<method>/lowlabel.json.

Per label subset (data/shards/subsets/<fraction>.txt): a linear probe on the
subset's frozen features, the encoder fine-tuned on the subset, and optionally a
self-distilled student (sslflow.eval.lowlabel). Accuracies are fractions on the split
`eval.split` names; a classifier that does not apply (raw pixels have nothing to
fine-tune) is null.
"""

from __future__ import annotations

import argparse
import time

from sslflow import paths
from sslflow.methods.registry import names
from sslflow.params import Params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=names(), help="whose encoder to evaluate")


def run(params: Params, method: str) -> dict:
    """Evaluate every fraction in eval.lowlabel.fractions, write the metrics file atomically, return it."""
    import torch

    from sslflow.atomic import write_json
    from sslflow.data.manifest import check_shard_sizes, load_manifest
    from sslflow.data.read import read_subset
    from sslflow.eval.device import default_device
    from sslflow.eval.inputs import method_features, num_classes
    from sslflow.eval.lowlabel import evaluate_fraction
    from sslflow.eval.split import eval_split
    from sslflow.testpoints import pause_point

    device = default_device()
    split = eval_split(params)
    check_shard_sizes(load_manifest(paths.SHARDS), paths.SHARDS, split.shard_splits)  # fine-tuning reads the shards
    train, val = method_features(method, split)
    n_classes = num_classes(train, val)
    metrics = {}
    for fraction in params.eval.lowlabel.fractions:
        start = time.perf_counter()
        torch.manual_seed(params.seed)  # the new classifier layers start the same on every run
        keys = read_subset(fraction, paths.SHARDS)
        metrics[fraction] = evaluate_fraction(params, split, method, fraction, keys, train, val, n_classes, device)
        print(f"{method} {fraction}: {_describe(metrics[fraction])} ({time.perf_counter() - start:.1f} s)")
        pause_point("lowlabel.fraction", len(metrics))
    write_json(paths.metrics(method, "lowlabel"), metrics)
    return metrics


def _describe(entry: dict) -> str:
    parts = [f"{entry['n_labels']} labels"]
    for name in ("linear", "finetune", "distill"):
        if entry[f"{name}_top1"] is not None:
            parts.append(f"{name} top-1 {100 * entry[f'{name}_top1']:.1f}")
    return ", ".join(parts)
