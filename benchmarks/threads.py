"""OpenMP's threads on a few cores: the wait policy, and processes that share the cores.

    python benchmarks/threads.py                       # supervised step, batch 64 (fine-tuning's)
    python benchmarks/threads.py --method simclr --batch 128 --rounds 2

Run in a project with shards (after `make run`, or `sslflow shard`). Two comparisons,
each a training step on synthetic tensors (`sslflow bench pretrain`'s ceiling, no loader):

1. OMP_WAIT_POLICY unset (OpenMP's own: a thread spins a while after each op, then
   sleeps) against PASSIVE (sleeps at once) and ACTIVE (spins), alternated over the
   rounds. OpenMP reads the policy when torch loads, so every setting is a new process.
2. Two processes stepping at once on the same cores (what a flow's `launch.concurrency: 2`
   does on 2 cores): both with torch's default threads (one a core) against both with 1
   thread. Each pair is reported as images/s of both together against one process alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICIES = {"unset": None, "PASSIVE": "PASSIVE", "ACTIVE": "ACTIVE"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="supervised")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # a timed process: its start gate
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args)

    policy_rates: dict[str, list[float]] = {name: [] for name in POLICIES}
    alone, shared_default, shared_one = [], [], []
    for _ in range(args.rounds):
        for name, value in POLICIES.items():
            policy_rates[name].append(timed(args, [env_with(OMP_WAIT_POLICY=value)])[0])
        alone.append(policy_rates["unset"][-1])
        shared_default.append(sum(timed(args, [env_with(), env_with()])))
        shared_one.append(sum(timed(args, [env_with(OMP_NUM_THREADS="1")] * 2)))
    print(f"{args.method} step, batch {args.batch}, {os.cpu_count()} cores; images/s, medians of {args.rounds} rounds")
    base = statistics.median(policy_rates["unset"])
    for name, rates in policy_rates.items():
        print(
            f"  one process, OMP_WAIT_POLICY {name:8} {statistics.median(rates):8.1f}  ({statistics.median(rates) / base:.2f}x unset)"
        )
    for label, rates in (
        ("two processes, default threads", shared_default),
        ("two processes, 1 thread each", shared_one),
    ):
        rate = statistics.median(rates)
        print(f"  {label:38} {rate:8.1f}  ({rate / statistics.median(alone):.2f}x one alone)")
    return 0


def env_with(**values: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in values}
    env.update({k: v for k, v in values.items() if v is not None})
    return env


def timed(args, envs: list[dict[str, str]]) -> list[float]:
    """images/s of each process, all started together once every one has built its model."""
    with tempfile.TemporaryDirectory() as tmp:
        gate = Path(tmp) / "go"
        cmd = [sys.executable, __file__, "--worker", str(gate), "--method", args.method]
        cmd += ["--batch", str(args.batch), "--steps", str(args.steps)]
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for env in envs]
        while len(list(Path(tmp).glob("ready-*"))) < len(procs):
            if any(p.poll() not in (None, 0) for p in procs):
                raise SystemExit("a timed process failed")
            time.sleep(0.05)
        gate.touch()
        return [json.loads(p.communicate()[0].strip().splitlines()[-1])["images_per_s"] for p in procs]


def worker(args) -> int:
    import torch

    from sslflow.bench.pretrain import StepBench, _repeat
    from sslflow.params import load_params
    from sslflow.paths import SHARDS

    bench = StepBench(load_params("params.yaml"), args.method, torch.device("cpu"), args.batch, SHARDS)
    example = bench.example()
    for _ in range(3):
        bench._step(example)
    (args.worker.parent / f"ready-{os.getpid()}").touch()
    while not args.worker.exists():
        time.sleep(0.01)
    print(json.dumps({"images_per_s": bench._timed(_repeat(example), 0, args.steps, bench._step)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
