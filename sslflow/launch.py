"""The `launch` section of params.yaml: where and how wide the stages run.

It is not a dependency of any DVC stage: the same results come out whether a
stage runs on one process or under torchrun, so changing the launch layout
must not invalidate the cache.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

from pydantic import Field

from sslflow.section import Section


class LaunchCfg(Section):
    nproc_per_node: int = Field(1, gt=0, description="processes (GPUs) per node for pretraining")
    nnodes: int = Field(1, gt=0)
    rdzv_endpoint: str = Field("localhost:29400", description="c10d rendezvous host:port (multi-node)")
    concurrency: int = Field(2, gt=0, description="stages a flow runs at once (independent branches)")
    retries: int = Field(1, ge=0, description="retries of a stage that failed for reasons other than bad input")


def _through_torchrun(cmd: str, launch: LaunchCfg) -> bool:
    distributed = launch.nproc_per_node > 1 or launch.nnodes > 1
    return distributed and shlex.split(cmd)[:2] == ["sslflow", "pretrain"]


def stage_command(cmd: str, launch: LaunchCfg) -> str:
    """The shell command that runs a DVC stage's `cmd`; pretraining goes through torchrun when wider than 1."""
    if not _through_torchrun(cmd, launch):
        return cmd
    words = shlex.split(cmd)
    torchrun = [
        "torchrun",
        f"--nnodes={launch.nnodes}",
        f"--nproc-per-node={launch.nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={launch.rdzv_endpoint}",
        "-m",
        "sslflow",
    ]
    return shlex.join(torchrun + words[1:])


def stage_env(cmd: str, launch: LaunchCfg, environ: Mapping[str, str], cores: int | None = None) -> dict[str, str]:
    """The environment a flow runs a DVC stage's `cmd` in: `environ` with OMP_NUM_THREADS at the
    stage's share of the cores, unless `environ` sets it.

    A flow runs `launch.concurrency` stages at once, and every torch process (each torchrun rank)
    otherwise starts one OpenMP thread per core. More threads than cores, meeting at a barrier
    after every op, wait at each for one the scheduler has set aside: two fine-tuning processes of
    2 threads on 2 cores each ran a step 10-50x slower than one alone, and 1 thread each about as
    fast as alone (benchmarks/README.md). torchrun hands the value to its ranks.
    """
    env = dict(environ)
    if "OMP_NUM_THREADS" not in env:
        cores = cores or len(os.sched_getaffinity(0))
        processes = launch.concurrency * (launch.nproc_per_node if _through_torchrun(cmd, launch) else 1)
        env["OMP_NUM_THREADS"] = str(max(1, cores // processes))
    return env
