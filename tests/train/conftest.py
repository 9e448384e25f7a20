"""A writable project per test that shares the session's tiny shards (read-only) by symlink."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

# small enough that a CPU step takes milliseconds, deep enough to be the real ResNet code path
SMALL_MODEL = ["model.arch=resnet18", "model.width=0.125", "model.stem_stride=1", "model.pool=1"]


class Epochs:
    """The same in-memory batches every epoch, behind the loader interface the fine-tuning loop reads."""

    def __init__(self, batches: list[dict]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)

    def next_epoch(self) -> Epochs:
        return self


def make_train_project(root: Path, tiny_project: Path, overrides: dict | None = None) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "shards").symlink_to(tiny_project / "data" / "shards")
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    for key, value in (overrides or {}).items():
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.fixture
def train_project(tmp_path, tiny_project, monkeypatch) -> Path:
    """cwd = a fresh project over the tiny shards (exemplar patches, models/ and metrics/ land here)."""
    project = make_train_project(tmp_path / "project", tiny_project)
    monkeypatch.chdir(project)
    return project
