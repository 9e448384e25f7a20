"""Linear evaluation: logistic regression on a method's frozen features -> metrics/<method>/linear.json.

Top-1 / top-5 (fractions) on the split `eval.split` names (sslflow/eval/split.py); the L2
strength is chosen on a held-out slice of train and the probe refit on all of train (see
sslflow.eval.linear_probe).
"""

from __future__ import annotations

import argparse
import time

from sslflow import paths
from sslflow.methods.registry import names
from sslflow.params import Params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=names(), help="whose features to probe")


def run(params: Params, method: str) -> dict:
    """Probe the features, write the metrics file atomically and return what was written."""
    from sslflow.atomic import write_json
    from sslflow.eval.inputs import method_features, num_classes
    from sslflow.eval.linear_probe import probe_with
    from sslflow.eval.split import eval_split
    from sslflow.testpoints import pause_point

    start = time.perf_counter()
    train, val = method_features(method, eval_split(params))
    result = probe_with(
        params.eval.linear,
        train.features,
        train.labels,
        val.features,
        val.labels,
        n_classes=num_classes(train, val),
        seed=params.seed,
    )
    metrics = {**result.metrics(), "backbone": train.backbone, "params_m": train.params_m}
    pause_point("linear.probed")
    write_json(paths.metrics(method, "linear"), metrics)
    took = time.perf_counter() - start
    print(
        f"{paths.metrics(method, 'linear')}: top-1 {100 * result.top1:.1f}, top-5 {100 * result.top5:.1f} "
        f"(l2 {result.l2:g}, {result.n_train} x {result.n_features}, {result.backend}, {took:.1f} s)"
    )
    return metrics
