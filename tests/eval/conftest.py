"""A project over the tiny shards with the two encoders every evaluation test needs, features extracted.

`random_init` (an untrained ResNet, saved by the real pretrain stage) and
`raw_pixels`; built once per session, treated as read-only except for the
metrics files the stage tests write.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ENCODERS = ("random_init", "raw_pixels")


# what the tests compute against, whatever the CPU profile's defaults: a global pool
# (128 features at 0.25x) and exact float32 features
PINNED = {"model": {"pool": 1}, "eval": {"extract": {"dtype": "float32"}}}


def new_project(root: Path, tiny_project: Path) -> Path:
    """A writable project: the tiny shards by symlink, the tiny project's params with PINNED."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "shards").symlink_to(tiny_project / "data" / "shards")
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    for section, values in PINNED.items():
        _merge(params.setdefault(section, {}), values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _merge(into: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            _merge(into.setdefault(key, {}), value)
        else:
            into[key] = value


def in_project(project: Path, fn, *args, **kwargs):
    """Call fn with the cwd at `project` (the stages write relative to it)."""
    before = os.getcwd()
    os.chdir(project)
    try:
        return fn(*args, **kwargs)
    finally:
        os.chdir(before)


def pretrain_and_extract(overrides: list[str] = ()) -> None:
    from sslflow.params import load_params
    from sslflow.stages import extract, pretrain

    params = load_params("params.yaml", overrides)
    for method in ENCODERS:
        pretrain.run(params, method)
        extract.run(params, method)


@pytest.fixture(scope="session")
def eval_project(tmp_path_factory, tiny_project) -> Path:
    project = new_project(tmp_path_factory.mktemp("eval-project"), tiny_project)
    in_project(project, pretrain_and_extract)
    return project
