"""`torchrun --nnodes 2 --nproc-per-node 1` on localhost (c10d rendezvous): two nodes train one model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslflow.errors import UserError
from sslflow.train.distributed import check_batch
from tests.processes import free_port

from .conftest import SMALL_MODEL, make_train_project


@pytest.mark.slow
def test_two_node_torchrun_trains(tmp_path, tiny_project):
    project = make_train_project(tmp_path / "project", tiny_project)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    port = free_port()
    settings = [
        *SMALL_MODEL,
        "train.batch_size=32",
        "train.epochs=1",
        "train.knn.val_samples=64",
        "augment.threads=1",
        "train.threads=1",
    ]
    nodes = []
    for node_rank in (0, 1):
        cmd = [
            torchrun,
            "--nnodes",
            "2",
            "--nproc-per-node",
            "1",
            "--node-rank",
            str(node_rank),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{port}",
            "--rdzv-id",
            "sslflow-test",
            "-m",
            "sslflow",
            "pretrain",
            "--method",
            "simclr",
        ]
        for item in settings:
            cmd += ["-S", item]
        nodes.append(subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]

    summary = json.loads((project / "metrics/simclr/pretrain.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 32
    assert summary["steps"] == 1000 // 32  # each rank reads half the split in batches of 16
    state = torch.load(project / "models/simclr/last.pt", weights_only=True)
    assert state["world_size"] == 2 and state["done"]
    losses = [
        float(line.split("\t")[1])
        for line in (project / "dvclive/simclr/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    ]
    assert losses[-1] < losses[0]


def test_global_batch_must_split_over_the_processes():
    assert check_batch(256, 4, "train.batch_size") == 64
    with pytest.raises(UserError, match=r"train.batch_size: 6 must be a multiple of the number of processes \(4\)"):
        check_batch(6, 4, "train.batch_size")
    with pytest.raises(UserError, match="multiple of the number of processes"):
        check_batch(2, 4, "train.batch_size")
