"""Time `sslflow shard` against `tar -cf` of the same image tree (the I/O bound for packing it).

    python benchmarks/shard.py                      # build (once, cached) and time a 20,000-JPEG tree
    python benchmarks/shard.py --tree DIR           # time an existing ROOT/{train,val}/<class>/ tree
    python benchmarks/shard.py --images 50000 --repeat 3

The generated tree is ImageFolder-shaped, with ImageNet-like JPEGs (500x375,
~110 KB, sslflow/bench/trees.py), so building it costs seconds, not the hour
that encoding 20,000 images would. Both timed commands read the same page-cached
files and write an archive of the same size to the same file system: tar runs
once first to warm the cache, `sync` runs (untimed) after each timed command,
and each side's best of --repeat runs is reported, with its CPU time (what
other load on the machine competes for).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from sslflow.bench.trees import build_imagefolder, tree_stats
from sslflow.bench.usage import measure

REPO = Path(__file__).resolve().parents[1]
CACHE = Path("/tmp/sslflow-bench")


def main() -> None:
    args = parse_args()
    tree = args.tree or build_imagefolder(CACHE / f"tree-{args.images}", args.images)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    files, size = tree_stats(tree)
    print(f"tree {tree}: {files} files, {size / 2**30:.2f} GiB")

    project = make_project(work / "project", tree, args.shard_mb, args.workers)
    archive = work / "tree.tar"
    tar_cmd = ["tar", "-cf", str(archive), "-C", str(tree), "."]
    shard_cmd = [str(Path(sys.executable).with_name("sslflow")), "shard"]

    timed(tar_cmd, cleanup=lambda: archive.unlink())  # warm the page cache with the source
    tar_runs, shard_runs = [], []
    for _ in range(args.repeat):
        tar_runs.append(timed(tar_cmd, cleanup=lambda: archive.unlink()))
        shard_runs.append(timed(shard_cmd, cwd=project, cleanup=lambda: shutil.rmtree(project / "data")))
    (tar_s, tar_cpu), (shard_s, shard_cpu) = min(tar_runs), min(shard_runs)
    print(
        f"tar -cf        : {tar_s:7.2f} s  ({size / tar_s / 2**20:5.0f} MiB/s, {tar_cpu:5.2f} s CPU)  runs {fmt(tar_runs)}"
    )
    print(
        f"sslflow shard  : {shard_s:7.2f} s  ({size / shard_s / 2**20:5.0f} MiB/s, {shard_cpu:5.2f} s CPU)  runs {fmt(shard_runs)}"
    )
    print(
        f"ratio shard/tar: {shard_s / tar_s:7.2f}  (target <= 1.5; {len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.1f})"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--tree", type=Path, help="existing imagefolder tree (default: generate one, cached in /tmp)")
    parser.add_argument("--images", type=int, default=20_000, help="train images to generate (val adds 5%%)")
    parser.add_argument("--work", default=str(CACHE / "work"), help="where the tar and the shards are written")
    parser.add_argument("--shard-mb", type=float, default=256.0, help="data.shard_size_mb")
    parser.add_argument("--workers", type=int, default=0, help="data.workers (0: all cores)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each; the best is reported")
    return parser.parse_args()


def timed(cmd: list[str], cwd: Path | None = None, cleanup=None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children) of one run, then sync and clean up."""
    usage = measure(cmd, cwd=cwd).check()
    subprocess.run(["sync"], check=True)
    if cleanup is not None:
        cleanup()
    return usage.wall_s, usage.cpu_s


def fmt(runs: list[tuple[float, float]]) -> str:
    return ", ".join(f"{wall:.2f}" for wall, _ in runs)


def make_project(project: Path, tree: Path, shard_mb: float, workers: int) -> Path:
    project.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(project / "data", ignore_errors=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(
        {
            "source": str(tree),
            "layout": "imagefolder",
            "class_names": None,
            "shard_size_mb": shard_mb,
            "workers": workers,
        }
    )
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


if __name__ == "__main__":
    main()
