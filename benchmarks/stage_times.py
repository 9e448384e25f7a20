"""Where `make run`'s time goes: seconds and share of each stage, measured on a fresh clone.

    python3 benchmarks/stage_times.py --clone /tmp/timed          # clone this repo there, `make run`, the table
    python3 benchmarks/stage_times.py --times FILE --total-s 1234  # the table of an earlier run's records

Every `sslflow` command appends one line to $SSLFLOW_TIMES (sslflow/cli.py): its
wall seconds from process start, the interpreter and its imports included. The
install (`make install dataset`) is timed apart from `dvc repro`; what `dvc
repro` spends outside the stages' processes (hashing, lock files, starting each
stage) is its total less theirs. Writes a markdown table (benchmarks/README.md
carries the latest) and, with --json, every record.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run with the system python3: sslflow.machine needs only the standard library

from sslflow.machine import cpu_description  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--clone", type=Path, help="a new folder: clone the repo there and time `make run`")
    source.add_argument("--times", type=Path, help="the SSLFLOW_TIMES file of an earlier run")
    parser.add_argument("--total-s", type=float, default=None, help="with --times: dvc repro's wall seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the records and the table here")
    args = parser.parse_args()
    if args.clone is not None:
        install_s, total_s, times = timed_make_run(args.clone)
    else:
        install_s, total_s, times = None, args.total_s, args.times
    records = [json.loads(line) for line in times.read_text().splitlines() if line.strip()]
    rows = stage_rows(records, total_s)
    print(f"CPU: {cpu_description()}")
    if install_s is not None:
        print(f"make run: {(install_s + total_s) / 60:.1f} min (install {install_s:.0f} s, dvc repro {total_s:.0f} s)")
    print(markdown(rows))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "cpu": cpu_description(),
                    "install_s": install_s,
                    "repro_s": total_s,
                    "rows": rows,
                    "records": records,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


def timed_make_run(clone: Path) -> tuple[float, float, Path]:
    """(install seconds, dvc repro seconds, the records file) of `make run` in a fresh clone."""
    if clone.exists():
        sys.exit(f"{clone}: already exists; give a new folder")
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    times = clone / "stage_times.jsonl"
    env = {**os.environ, "SSLFLOW_TIMES": str(times)}
    start = time.perf_counter()
    subprocess.run(["make", "install", "dataset"], cwd=clone, env=env, check=True)
    installed = time.perf_counter()
    subprocess.run(["make", "run"], cwd=clone, env=env, check=True)
    return installed - start, time.perf_counter() - installed, times


def stage_rows(records: list[dict], total_s: float | None) -> list[dict]:
    """One row per stage kind (pretrain, extract, ...: processes, seconds, share), then what dvc spent besides."""
    by_stage: dict[str, list[float]] = defaultdict(list)
    for record in records:
        if record.get("rank", 0) != 0:  # a torchrun job counts once, by rank 0
            continue
        by_stage[record["command"].split(" --")[0].split(" -S")[0]].append(record["seconds"])
    stages_s = sum(sum(v) for v in by_stage.values())
    total = total_s if total_s is not None else stages_s
    rows = [
        {"stage": stage, "processes": len(seconds), "seconds": round(sum(seconds), 1), "share": sum(seconds) / total}
        for stage, seconds in sorted(by_stage.items(), key=lambda kv: -sum(kv[1]))
    ]
    if total_s is not None:
        rest = total_s - stages_s
        rows.append(
            {"stage": "dvc besides the stages", "processes": 0, "seconds": round(rest, 1), "share": rest / total}
        )
    for row in rows:
        row["share"] = round(row["share"], 3)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| stage | processes | seconds | share |", "|:--|--:|--:|--:|"]
    lines += [f"| {r['stage']} | {r['processes']} | {r['seconds']:.0f} | {100 * r['share']:.1f}% |" for r in rows]
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **dvc repro** | {sum(r['processes'] for r in rows)} | **{total:.0f}** | 100% |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
