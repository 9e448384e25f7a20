"""Cost curves to ImageNet size: time and peak memory of each CPU-side stage at growing sizes.

    python benchmarks/scale.py                                # 10k, 40k, 160k ILSVRC-sized JPEGs
    python benchmarks/scale.py --sizes 2000 8000              # a quick look
    python benchmarks/scale.py --probe 1281167x2048           # the linear probe's memory at ImageNet's shape

For each size an ILSVRC2012-shaped tree is generated (sslflow/bench/trees.py:
1000 wnids, ~110 KB 500x375 JPEGs, a flat val/ with LOC_val_solution.csv;
cached in --cache) and the stages run on it through the real CLI, each in a
child process whose wall time, CPU time and peak RSS are taken from the kernel
(sslflow/bench/usage.py): `shard`, `extract` (a small encoder, ResNet-18 at
0.25x width, untrained: the `random_init` control, at the ImageNet eval views
of 224 px), `linear` (1000 classes, one L2 strength, a fixed number of L-BFGS
iterations, so its work per row is constant) and `lowlabel` (1% and 10%
probes). `tar -cf` of the same tree runs in the same process as the I/O bound
for `shard` (once to warm the page cache, then timed).

The table gives, per stage and size, seconds per 1,000 images and peak RSS,
then a least-squares line through the sizes, time = a + b * images and
RSS = c + d * images, and its value at ILSVRC2012's 1,281,167 train images.
Results also go to --out as JSON.

--probe ROWSxDIM writes random features of that shape (float16, 1000 classes)
as a features file, a chunk at a time, and measures the linear probe on them
(memory-mapped, streamed at eval.linear.resident_mb) for --probe-iters L-BFGS
iterations: whether ImageNet's 1.28M x 2048 fits a 24 GB CPU node, and what
one pass costs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from sslflow.bench.trees import build_ilsvrc, tree_stats
from sslflow.bench.usage import Usage, measure

REPO = Path(__file__).resolve().parents[1]
IMAGENET_TRAIN = 1_281_167
METHOD = "random_init"
STAGES = ("shard", "extract", "linear", "lowlabel")


def main() -> None:
    args = parse_args()
    if args.probe_child:
        return probe_child(args)
    if args.probe:
        return probe(args)
    rows = []
    for images in args.sizes:
        rows.extend(run_size(images, args))
        shutil.rmtree(args.work / f"project-{images}", ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print()
    print(table(rows))
    print()
    print(growth(rows))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000, 160_000], help="train images")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/sslflow-bench"), help="generated trees")
    parser.add_argument("--work", type=Path, default=Path("/tmp/sslflow-bench/scale"), help="projects and tars")
    parser.add_argument("--out", type=Path, default=Path("/tmp/sslflow-bench/scale.json"), help="results")
    parser.add_argument("--linear-iters", type=int, default=10, help="L-BFGS iterations of the linear stage")
    parser.add_argument("--probe", help="ROWSxDIM: measure the linear probe on random features of that shape")
    parser.add_argument("--probe-iters", type=int, default=1, help="L-BFGS iterations for --probe")
    parser.add_argument("--resident-mb", type=float, default=2048, help="eval.linear.resident_mb for --probe")
    parser.add_argument("--probe-child", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


# ----------------------------------------------------------------------------- stages at one size


def run_size(images: int, args: argparse.Namespace) -> list[dict]:
    tree = build_ilsvrc(args.cache / f"ilsvrc-{images}", images)
    files, size = tree_stats(tree)
    project = make_project(args.work / f"project-{images}", tree, args.linear_iters)
    print(f"\n{images} train images: {tree} ({files} files, {size / 2**30:.2f} GiB)", flush=True)
    tar = tar_time(tree, args.work / "tree.tar")
    sslflow = str(Path(sys.executable).with_name("sslflow"))
    usages = {"tar -cf": tar}
    for stage in STAGES:
        cmd = [sslflow, stage] if stage == "shard" else [sslflow, stage, "--method", METHOD]
        if stage == "extract":
            measure([sslflow, "pretrain", "--method", METHOD], cwd=project).check()  # the encoder to run
        usages[stage] = measure(cmd, cwd=project).check()
        if stage == "shard":
            subprocess.run(["sync"], check=True)
        print(f"  {stage:9s} {usages[stage].wall_s:8.1f} s  peak RSS {usages[stage].peak_rss_mb:7.0f} MB", flush=True)
    features = (project / f"data/features/{METHOD}/train.npz").stat().st_size
    return [
        {
            "stage": stage,
            "images": images,
            "files": files,
            "bytes": size,
            "wall_s": u.wall_s,
            "cpu_s": u.cpu_s,
            "peak_rss_mb": u.peak_rss_mb,
            "train_features_mb": features / 2**20,
            "load": os.getloadavg()[0],
        }
        for stage, u in usages.items()
    ]


def tar_time(tree: Path, archive: Path) -> Usage:
    """`tar -cf` of the tree, timed on its second run (the first warms the page cache); the archive removed."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # the first run warms the page cache, the second is timed
        usage = measure(["tar", "-cf", str(archive), "-C", str(tree), "."]).check()
        subprocess.run(["sync"], check=True)
        archive.unlink()
    print(f"  tar -cf   {usage.wall_s:8.1f} s", flush=True)
    return usage


def make_project(project: Path, tree: Path, linear_iters: int) -> Path:
    """The ImageNet profile on this tree, with a small untrained encoder and a fixed-work probe."""
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    params = yaml.safe_load((REPO / "params/imagenet-r50.yaml").read_text())
    params["data"].update({"source": str(tree), "workers": 0})
    params["model"].update({"arch": "resnet18", "width": 0.25})
    params["train"].update({"device": "cpu", "compile": False, "precision": "fp32"})
    params["train"]["knn"]["val_samples"] = 1000
    params["eval"]["extract"]["batch_size"] = 256
    params["eval"]["linear"].update({"l2_grid": [1e-3], "max_iter": linear_iters, "backend": "torch"})
    params["eval"]["lowlabel"]["finetune"]["enabled"] = False
    params["eval"]["lowlabel"]["distill"]["enabled"] = False
    params["pretrain"]["methods"] = [METHOD]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


# ----------------------------------------------------------------------------- the table


def table(rows: list[dict]) -> str:
    sizes = sorted({r["images"] for r in rows})
    head = "| stage | " + " | ".join(f"{n:,} images: s / 1k, peak RSS MB" for n in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)]
    for stage in ("tar -cf", *STAGES):
        cells = []
        for n in sizes:
            (r,) = [r for r in rows if r["stage"] == stage and r["images"] == n]
            cells.append(f"{1000 * r['wall_s'] / n:.2f}, {r['peak_rss_mb']:.0f}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    ratios = []
    for n in sizes:
        shard, tar = (next(r for r in rows if r["stage"] == s and r["images"] == n) for s in ("shard", "tar -cf"))
        ratios.append(f"{shard['wall_s'] / tar['wall_s']:.2f}x")
    lines.append("| shard / tar | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def fit(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope)."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(intercept), float(slope)


def growth(rows: list[dict]) -> str:
    lines = [
        "| stage | time: s per 1k images (slope) | RSS: intercept MB, MB per 100k images | at 1,281,167: time, peak RSS |",
        "|---|---:|---:|---:|",
    ]
    for stage in ("tar -cf", *STAGES):
        mine = sorted((r for r in rows if r["stage"] == stage), key=lambda r: r["images"])
        n = [r["images"] for r in mine]
        t0, t1 = fit(n, [r["wall_s"] for r in mine])
        m0, m1 = fit(n, [r["peak_rss_mb"] for r in mine])
        at = IMAGENET_TRAIN
        lines.append(
            f"| {stage} | {1000 * t1:.2f} | {m0:.0f}, {1e5 * m1:+.1f} | "
            f"{(t0 + t1 * at) / 3600:.2f} h, {(m0 + m1 * at) / 1024:.2f} GB |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the probe at ImageNet's shape


def probe(args: argparse.Namespace) -> None:
    rows, dim = (int(v) for v in args.probe.lower().split("x"))
    folder = args.work / f"probe-{rows}x{dim}"
    write_random_features(folder, rows, dim)
    usage = measure(
        [
            sys.executable,
            __file__,
            "--probe-child",
            str(folder),
            "--probe-iters",
            str(args.probe_iters),
            "--resident-mb",
            str(args.resident_mb),
        ]
    ).check()
    print(usage.output.strip())
    size = (folder / "train.npz").stat().st_size
    print(
        f"features file {size / 2**30:.2f} GiB; linear probe ({args.probe_iters} L-BFGS iteration(s), resident_mb "
        f"{args.resident_mb:g}): {usage.wall_s:.0f} s, peak RSS {usage.peak_rss_mb / 1024:.2f} GiB"
    )


def write_random_features(folder: Path, rows: int, dim: int, classes: int = 1000, chunk: int = 65536) -> None:
    """train.npz (rows) and val.npz (50,000) of Gaussian classes, float16, written a chunk at a time."""
    from sslflow.eval.features import FeatureWriter

    meta = {"fingerprint": "random", "head_layers": 0, "backbone": "random", "params_m": 0.0}
    done = folder / "complete"
    if done.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    means = rng.standard_normal((classes, dim)).astype(np.float32)
    means *= 3.0 / np.linalg.norm(means, axis=1, keepdims=True)
    for split, n in (("train", rows), ("val", 50_000)):
        writer = FeatureWriter(folder / f"{split}.npz", total=n, dtype="float16", meta=meta, desc=split)
        for start in range(0, n, chunk):
            labels = rng.integers(0, classes, min(chunk, n - start))
            x = rng.standard_normal((len(labels), dim), dtype=np.float32) + means[labels]
            writer.add(x, labels, [f"{split}_{i}" for i in range(start, start + len(labels))])
        writer.close()
    done.touch()


def probe_child(args: argparse.Namespace) -> None:
    """The linear stage's reading side and probe on a features folder: load (mapped), fit, score.

    Every pass over a row set (an L-BFGS loss evaluation, or the scoring) is one call of
    Rows.chunks; they are counted so the time of one pass can be given.
    """
    import time

    from sslflow.eval import linear_probe as lp
    from sslflow.eval.features import load_features

    passes = []
    chunks = lp.Rows.chunks

    def counted(self):
        passes.append(len(self))
        return chunks(self)

    lp.Rows.chunks = counted
    start = time.perf_counter()
    train = load_features(args.probe_child / "train.npz", fingerprint=None, method="random")
    val = load_features(args.probe_child / "val.npz", fingerprint=None, method="random")
    result = lp.linear_probe(
        train.features,
        train.labels,
        val.features,
        val.labels,
        n_classes=1000,
        l2_grid=[1e-4],
        max_iter=args.probe_iters,
        backend="torch",
        resident_mb=args.resident_mb,
        device="cpu",
    )
    took = time.perf_counter() - start
    train_passes = sum(1 for n in passes if n == len(train.labels))
    print(
        f"{len(train.labels)} x {train.features.shape[1]} ({train.features.dtype}, {type(train.features).__name__}): "
        f"top-1 {100 * result.top1:.1f} after {args.probe_iters} iteration(s); {train_passes} passes over train, "
        f"{took:.0f} s in all, {took / max(1, train_passes):.0f} s a pass"
    )


if __name__ == "__main__":
    main()
