"""Records -> shard plans -> tars, in parallel, with output that does not depend on the worker count.

The plan (which sample goes in which shard, in which order) is made up front
from a seeded permutation and the records' sizes; each worker then writes whole
shards from the plan. Shard contents are therefore a function of the params
and the source alone, whatever the number of processes or their timing.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sslflow.atomic import DISK_FULL
from sslflow.data.encode import BadImage
from sslflow.data.records import Reader, Record
from sslflow.data.tarwriter import BLOCK, ShardInfo, ShardWriter
from sslflow.errors import UserError
from sslflow.testpoints import pause_point

# bytes a sample takes in a tar besides its image data: two headers and the padded .cls member
SAMPLE_OVERHEAD = 3 * BLOCK
PROGRESS_EVERY = 64


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


@dataclass
class ShardTask:
    """One shard to write: its place, its records in order, and how to read them."""

    split: str
    index: int
    path: Path
    records: list[Record]
    reader: Reader
    skip_bad: bool


@dataclass
class ShardResult:
    split: str
    index: int
    info: ShardInfo
    kept: list[tuple[str, int]]  # (key, label) in shard order
    skipped: list[dict[str, str]]  # {"file", "reason"}


def plan_shards(records: list[Record], seed: int, stream: int, target_bytes: float) -> list[list[Record]]:
    """Shuffle with a generator seeded by (seed, stream) and cut where a shard would pass the target size."""
    order = np.random.default_rng([seed, stream]).permutation(len(records))
    shards: list[list[Record]] = []
    current: list[Record] = []
    size = 0
    for i in order.tolist():
        record = records[i]
        need = SAMPLE_OVERHEAD + record.size + (-record.size % BLOCK)
        if current and size + need > target_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(record)
        size += need
    if current:
        shards.append(current)
    return shards


def write_shard(task: ShardTask, progress=None) -> ShardResult:
    """Read, check and store each record; a bad image is an error or, with skip_bad, a skip-list entry."""
    writer = ShardWriter(task.path)
    kept, skipped, pending = [], [], 0
    try:
        for record in task.records:
            try:
                ext, data = task.reader.sample(record.ref)
            except BadImage as exc:
                if not task.skip_bad:
                    raise UserError(f"{task.reader.describe(record.ref)}: {exc}") from None
                skipped.append({"file": str(record.ref), "reason": str(exc)})
            else:
                writer.add(record.key, ext, data, record.label)
                kept.append((record.key, record.label))
            pending += 1
            if progress is not None and pending == PROGRESS_EVERY:
                progress(pending)
                pending = 0
    except BaseException:
        writer.abort()
        raise
    if progress is not None and pending:
        progress(pending)
    return ShardResult(task.split, task.index, writer.close(), kept, skipped)


def write_shards(tasks: list[ShardTask], workers: int, show_progress: bool = True) -> list[ShardResult]:
    """All tasks, over `workers` processes (1: in this process); results in task order."""
    total = sum(len(t.records) for t in tasks)
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(tasks)))
    bar = tqdm(total=total, unit="img", desc="shard", disable=None if show_progress else True, smoothing=0.05)
    try:
        if workers == 1:
            results = []
            for task in tasks:
                results.append(write_shard(task, bar.update))
                pause_point("shard.written", len(results))
        else:
            results = _write_parallel(tasks, workers, bar)
    finally:
        bar.close()
    order = {(t.split, t.index): n for n, t in enumerate(tasks)}
    return sorted(results, key=lambda r: order[(r.split, r.index)])


def _write_parallel(tasks: list[ShardTask], workers: int, bar: tqdm) -> list[ShardResult]:
    """Hand out shards one at a time over a pipe per worker; the parent alone schedules.

    No queue or lock is shared with the workers, so on an error or Ctrl-C the parent can kill
    them outright without deadlocking on a lock a killed worker held (as Pool.terminate can).
    Progress comes from one counter slot per worker, each written by its worker only.
    """
    ctx = mp.get_context("fork")  # starts in milliseconds; readers map their files by path
    counts = ctx.Array("q", workers, lock=False)
    pending = sorted(tasks, key=lambda t: -sum(r.size for r in t.records))  # largest first
    processes, busy, results = [], [], []
    try:
        for slot in range(workers):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child, slot, counts, os.getpid()), daemon=True)
            process.start()
            child.close()
            processes.append(process)
            parent.send(pending.pop(0))
            busy.append(parent)
        while busy:
            ready = wait(busy, timeout=0.2)
            bar.update(sum(counts) - bar.n)
            for conn in ready:
                results.append(_receive(conn))
                pause_point("shard.written", len(results))
                if pending:
                    conn.send(pending.pop(0))
                else:
                    conn.send(None)
                    busy.remove(conn)
    finally:
        for process in processes:
            if process.is_alive() and busy:  # an error or Ctrl-C: stop the others now
                process.kill()
            process.join()
    bar.update(sum(counts) - bar.n)
    return results


def _receive(conn) -> ShardResult:
    try:
        ok, payload = conn.recv()
    except EOFError:
        raise RuntimeError("a shard worker process died") from None
    if not ok:
        raise payload
    return payload


def _worker(conn, slot: int, counts, parent_pid: int) -> None:
    """Write the shards the parent sends until it sends None; report an exception and stop."""
    # Ctrl-C and SIGTERM sent to the whole process group are the parent's: it kills the workers
    # and removes the temp dir
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with(parent_pid)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        counts[slot] = done

    while (task := conn.recv()) is not None:
        try:
            conn.send((True, write_shard(task, progress)))
        except UserError as exc:
            conn.send((False, exc))
            return
        except OSError as exc:
            # a full disk is the user's to fix: passed on as it is, the parent reports it in one line
            conn.send((False, exc if exc.errno in DISK_FULL else _crash(task)))
            return
        except BaseException:
            conn.send((False, _crash(task)))
            return


PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> None:
    """Linux: the kernel kills this worker when the parent dies, SIGKILL included.

    A forked worker also holds its siblings' ends of their pipes, so a parent killed
    outright leaves every worker waiting on a pipe that never closes.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup is all there is
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _crash(task: ShardTask) -> RuntimeError:
    """The exception being handled, with its worker traceback as text (tracebacks do not pickle)."""
    return RuntimeError(f"writing {task.path.name}:\n{traceback.format_exc()}")
