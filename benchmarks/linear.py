"""The linear stage's probe on a random feature set: the torch backend against scikit-learn.

    python benchmarks/linear.py                                        # 60,000 x 512, 10 classes (Fashion-MNIST-sized)
    python benchmarks/linear.py --rows 1281167 --dim 2048 --classes 1000 --sklearn-rows 128000   # ImageNet-sized

Both backends run the whole protocol of `sslflow linear` (standardise, choose L2
on a held-out slice, refit) on the same Gaussian classes, in one process, so the
ratio compares like with like on whatever else the machine is doing. The torch
backend uses the GPU when there is one. scikit-learn on ImageNet-sized features
takes hours, so `--sklearn-rows` fits it on the first rows only and scales its
time by rows (L-BFGS cost is linear in rows at a fixed iteration count): the
printed figure then says "extrapolated".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from sslflow.eval.device import default_device
from sslflow.eval.linear_probe import linear_probe


def gaussian_classes(rows: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means on a sphere of radius 3 in the first dims, unit noise everywhere: separable, not trivially."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, dim)).astype(np.float32)
    means *= 3.0 / np.linalg.norm(means, axis=1, keepdims=True)
    labels = rng.integers(0, classes, rows)
    features = rng.standard_normal((rows, dim), dtype=np.float32)
    features += means[labels]
    return features, labels


def timed_probe(train, val, classes: int, backend: str, max_iter: int, grid: list[float]) -> tuple[float, float]:
    start = time.perf_counter()
    result = linear_probe(
        *train,
        *val,
        n_classes=classes,
        l2_grid=grid,
        backend=backend,
        max_iter=max_iter,
        device=default_device() if backend == "torch" else "cpu",
    )
    return time.perf_counter() - start, result.top1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--val-rows", type=int, default=10000)
    parser.add_argument(
        "--sklearn-rows", type=int, default=None, help="fit scikit-learn on this many rows and scale its time"
    )
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--grid", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2])
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)

    x, y = gaussian_classes(args.rows + args.val_rows, args.dim, args.classes, seed=0)
    train, val = (x[: args.rows], y[: args.rows]), (x[args.rows :], y[args.rows :])
    torch_s, torch_top1 = timed_probe(train, val, args.classes, "torch", args.max_iter, args.grid)
    sk_rows = min(args.sklearn_rows or args.rows, args.rows)
    sk_train = (train[0][:sk_rows], train[1][:sk_rows])
    sk_s, sk_top1 = timed_probe(sk_train, val, args.classes, "sklearn", args.max_iter, args.grid)
    sk_full_s = sk_s * args.rows / sk_rows
    result = {
        "rows": args.rows,
        "dim": args.dim,
        "classes": args.classes,
        "cpu_cores": os.cpu_count(),
        "torch_device": default_device(),
        "torch_s": round(torch_s, 2),
        "torch_top1": round(torch_top1, 4),
        "sklearn_rows": sk_rows,
        "sklearn_s": round(sk_full_s, 2),
        "sklearn_top1": round(sk_top1, 4),
        "sklearn_extrapolated": sk_rows < args.rows,
        "speedup": round(sk_full_s / torch_s, 2),
    }
    note = f" (extrapolated from {sk_rows:,} rows)" if result["sklearn_extrapolated"] else ""
    print(
        f"linear probe | {args.rows:,} x {args.dim} | {args.classes} classes | grid {args.grid} | max_iter {args.max_iter}"
    )
    rows = [
        (f"torch ({result['torch_device']})", f"{torch_s:10.1f} s   top-1 {torch_top1:.4f}"),
        (f"scikit-learn ({os.cpu_count()} cores)", f"{sk_full_s:10.1f} s   top-1 {sk_top1:.4f}{note}"),
        ("scikit-learn / torch", f"{result['speedup']:10.2f}x"),
    ]
    for label, value in rows:
        print(f"  {label:<28}{value}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
