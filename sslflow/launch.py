"""The `launch` section of params.yaml: where and how wide the stages run.

It is not a dependency of any DVC stage: the same results come out whether a
stage runs on one process or under torchrun, so changing the launch layout
must not invalidate the cache.
"""

from __future__ import annotations

import shlex

from pydantic import Field

from sslflow.section import Section


class LaunchCfg(Section):
    nproc_per_node: int = Field(1, gt=0, description="processes (GPUs) per node for pretraining")
    nnodes: int = Field(1, gt=0)
    rdzv_endpoint: str = Field("localhost:29400", description="c10d rendezvous host:port (multi-node)")
    concurrency: int = Field(2, gt=0, description="stages a flow runs at once (independent branches)")
    retries: int = Field(1, ge=0, description="retries of a stage that failed for reasons other than bad input")


def stage_command(cmd: str, launch: LaunchCfg) -> str:
    """The shell command that runs a DVC stage's `cmd`; pretraining goes through torchrun when wider than 1."""
    words = shlex.split(cmd)
    distributed = launch.nproc_per_node > 1 or launch.nnodes > 1
    if not (distributed and words[:2] == ["sslflow", "pretrain"]):
        return cmd
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
