"""A method is one file: the registry finds it, params validate its section, pretrain trains it, the report labels it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from sslflow.methods.registry import PLUGIN_PATH_ENV, names, specs

from .conftest import SMALL_MODEL

TOY = '''
"""A throw-away method that lives outside the package: rotation prediction with a linear head."""

from pydantic import Field
from torch import nn

from sslflow.methods.base import Method, classification
from sslflow.methods.spec import MethodSpec
from sslflow.schedule import Overrides


class ToyCfg(Overrides):
    bias: bool = Field(True)


class Toy(Method):
    def __init__(self, backbone, out_dim, bias):
        super().__init__(backbone)
        self.fc = nn.Linear(out_dim, 4, bias=bias)

    def forward(self, batch):
        return classification(self.fc(self.backbone(batch["image"])), batch["target"])

    def batch_images(self, batch):
        return batch["image"].shape[0] // 4


def build(ctx):
    return Toy(ctx.backbone, ctx.out_dim, ctx.section.bias)


METHODS = (MethodSpec(name="toy", label="Toy rotations", section=ToyCfg, views="rotation", build=build),)
'''


def sslflow(*args: str, cwd, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sslflow", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_every_package_method_is_found_with_its_section_label_and_views():
    found = specs()
    assert {"simclr", "simclr_v2", "moco", "rotation", "relpos", "exemplar", "supervised"} <= set(found)
    assert {"random_init", "raw_pixels"} <= set(found)
    assert [n for n in names() if found[n].control] == ["random_init", "raw_pixels", "supervised"]
    assert not found["random_init"].trains and found["moco"].trains
    assert found["moco"].views == "simclr" and found["moco"].label == "MoCo v2"


@pytest.mark.slow
def test_a_method_from_a_file_elsewhere_runs_through_pretrain_and_the_report(train_project, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "toy.py").write_text(textwrap.dedent(TOY))
    bare = dict(os.environ)
    bare.pop(PLUGIN_PATH_ENV, None)
    env = {**bare, PLUGIN_PATH_ENV: str(plugins)}

    unknown = sslflow("pretrain", "--method", "toy", cwd=train_project, env=bare)
    assert unknown.returncode == 2 and "--method toy: unknown method" in unknown.stderr

    settings = [*SMALL_MODEL, "pretrain.toy.max_steps=3", "pretrain.toy.bias=false", "train.batch_size=16"]
    settings += ["train.knn.val_samples=50", "pretrain.methods=[toy,random_init]"]
    flags = [arg for item in settings for arg in ("-S", item)]
    for stage in ("pretrain", "extract", "linear"):
        for method in ("toy", "random_init"):
            proc = sslflow(stage, "--method", method, *flags, cwd=train_project, env=env)
            assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((train_project / "metrics/toy/pretrain.json").read_text())
    assert summary["steps"] == 3 and summary["global_batch"] == 16
    linear = json.loads((train_project / "metrics/toy/linear.json").read_text())

    proc = sslflow("report", "--no-experiments", *flags, cwd=train_project, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (train_project / "reports/report.md").read_text()
    methods_group = report.split("*Self-supervised methods:*")[1].split("*Controls:*")[0]
    assert summary["views"] == 3 * 16 * 4, "a plugin's view kind counts its views: rotation's four"
    row = (
        f"| Toy rotations | {summary['backbone']} | {summary['params_m']:.2f} | 192 | {summary['wall_s']:.0f} "
        f"| {100 * linear['top1']:.1f} |"
    )
    assert row in methods_group
    rows = json.loads((train_project / "reports/summary.json").read_text())
    assert [r["method"] for r in rows] == ["toy", "random_init"]
    assert "What rotation trains on" in report  # the grid of the views the module named
