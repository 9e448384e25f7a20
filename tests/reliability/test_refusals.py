"""Refusals and guards through the real CLI: exit 2, one line naming the file or key, nothing half-written.

The command line and params file (a missing --params file, -S without `=`, -S through a key that is
not a section, a params file that is not a mapping, a malformed --grid); a broken Fashion-MNIST
download; an encoder trained at another augment.size; a checkpoint written by another number of
processes or by another format. And the one way a stage reads another params file: --params FILE.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import yaml

from tests.conftest import make_project, write_idx

from .conftest import METHOD, copy_outputs, new_project, one_error_line, sha256, snapshot, sslflow, temp_leftovers

LIST_PARAMS = "- data\n- train\n"

CASES = [
    # (command, extra files, expected message)
    (["pretrain", "--method", METHOD, "--params", "other.yaml"], {}, "other.yaml: params file not found"),
    (["pretrain", "--method", METHOD, "-S", "train.epochs"], {}, "-S train.epochs: expected key=value"),
    (["pretrain", "--method", METHOD, "-S", "seed.x=1"], {}, "-S seed.x=1: seed is not a section"),
    (
        ["extract", "--method", METHOD, "--params", "list.yaml"],
        {"list.yaml": LIST_PARAMS},
        "list.yaml: expected a mapping of sections at the top level",
    ),
    (["flow", "sweep", "--grid", "pretrain.simclr.temperature"], {}, "--grid pretrain.simclr.temperature: expected"),
    (["flow", "sweep", "--grid", "=0.1,0.5"], {}, "--grid =0.1,0.5: expected KEY=V1,V2,..."),
    (["flow", "sweep", "--grid", "pretrain.simclr.temperature="], {}, "--grid pretrain.simclr.temperature=: expected"),
]
IDS = ["params-file-missing", "set-without-equals", "set-through-a-value", "params-not-a-mapping"] + [
    "grid-without-equals",
    "grid-without-key",
    "grid-without-values",
]


@pytest.mark.parametrize("command, files, expected", CASES, ids=IDS)
def test_bad_command_line_is_one_line_and_exit_2(tmp_path, tiny_project, command, files, expected):
    project = new_project(tmp_path / "p", tiny_project)
    for name, text in files.items():
        (project / name).write_text(text)
    before = sorted(p.name for p in project.iterdir())
    words = 2 if command[0] == "flow" else 1
    message = one_error_line(sslflow(project, *command, timeout=180), "sslflow " + " ".join(command[:words]))
    assert message.startswith(expected), message
    assert sorted(p.name for p in project.iterdir()) == before


def test_a_stage_reads_the_params_file_it_is_given(tmp_path, tiny_source):
    """`sslflow shard --params FILE` shards with FILE's values; params.yaml is not read."""
    project = make_project(tmp_path / "p", {"source": str(tiny_source), "shard_size_mb": 0.25})
    other = yaml.safe_load((project / "params.yaml").read_text())
    other["data"]["class_names"] = [f"class {c}" for c in range(10)]
    (project / "params.yaml").write_text("data: {source: /nonexistent}\n")  # would fail if read
    (project / "other.yaml").write_text(yaml.safe_dump(other, sort_keys=False))
    sslflow(project, "shard", "--params", "other.yaml", check=True)
    manifest = json.loads((project / "data/shards/manifest.json").read_text())
    assert manifest["source"]["path"] == str(tiny_source)
    assert manifest["classes"] == [f"class {c}" for c in range(10)]


# ---- a broken Fashion-MNIST download ----------------------------------------------------------


def idx_source(root, break_it) -> tuple:
    """A small mnist-idx source (10 train, 4 val images) with one file broken by `break_it(path)`."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 10), ("t10k", 4)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    return break_it(root)


def cut_gzip(root):
    """A download that stopped half-way: the gzip stream ends early."""
    path = root / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "cannot read (Compressed file ended before the end-of-stream marker was reached)"


def short_pixels(root):
    """An uncompressed file with fewer pixels than its header counts."""
    gz = root / "train-images-idx3-ubyte.gz"
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(gzip.decompress(gz.read_bytes())[:-100])
    gz.unlink()
    return path, "7740 bytes of pixels, the header says (10, 28, 28) = 7840"


def html_page(root):
    """What a proxy's error page saved under the download's name looks like."""
    path = root / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"<html><body>404 Not Found</body></html>\n")
    return path, "cannot read (Not a gzipped file"


def wrong_magic(root):
    """A labels file where the images file should be."""
    path = root / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros(4, np.uint8))
    return path, "not an idx file (expected magic 0x00000803)"


@pytest.mark.parametrize("break_it", [cut_gzip, short_pixels, html_page, wrong_magic], ids=lambda f: f.__name__)
def test_a_broken_idx_file_is_named(tmp_path, break_it):
    path, reason = idx_source(tmp_path / "idx", break_it)
    project = make_project(tmp_path / "p", {"source": str(tmp_path / "idx")})
    message = one_error_line(sslflow(project, "shard", timeout=120), "sslflow shard")
    assert message.startswith(f"{path}: {reason}"), message
    assert not (project / "data/shards").exists() and temp_leftovers(project) == []
    assert not list(project.glob("data/.*"))  # nor the work files of an unfinished shard run


# ---- an encoder, a checkpoint from another run ------------------------------------------------


def test_an_encoder_trained_at_another_size_is_refused_by_extract(tmp_path, tiny_project, trained_project):
    project = new_project(tmp_path / "p", tiny_project)
    copy_outputs(trained_project, project, [f"models/{METHOD}/encoder.pt"])
    message = one_error_line(
        sslflow(project, "extract", "--method", METHOD, "-S", "augment.size=32"), "sslflow extract"
    )
    assert message == (
        f"models/{METHOD}/encoder.pt: trained on 28 px views but augment.size is 32 "
        f"(rerun `sslflow pretrain --method {METHOD}`)"
    )
    assert snapshot(project, [f"data/features/{METHOD}"]) == {f"data/features/{METHOD}": None}
    assert temp_leftovers(project) == []


def rewritten_checkpoint(project, trained_project, **changes) -> str:
    """The reference run's last.pt in `project` with `changes`; its sha256."""
    import torch

    copy_outputs(trained_project, project, [f"models/{METHOD}/last.pt"])
    path = project / f"models/{METHOD}/last.pt"
    state = torch.load(path, weights_only=True)
    state.update(changes)
    torch.save(state, path)
    return sha256(path)


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"world_size": 2},
            "written by 2 process(es), now 1; rerun with the same number or delete it to start over",
        ),
        ({"format": 0}, "not a checkpoint of this version of sslflow; delete it to start over"),
    ],
    ids=["another-world-size", "another-format"],
)
def test_resuming_from_another_runs_checkpoint_is_refused(tmp_path, tiny_project, trained_project, changes, expected):
    project = new_project(tmp_path / "p", tiny_project)
    digest = rewritten_checkpoint(project, trained_project, **changes)
    message = one_error_line(sslflow(project, "pretrain", "--method", METHOD), "sslflow pretrain")
    assert message == f"models/{METHOD}/last.pt: {expected}"
    assert sha256(project / f"models/{METHOD}/last.pt") == digest  # left for the user to decide
    assert sorted(p.name for p in (project / "models" / METHOD).iterdir()) == ["last.pt"]
    assert not (project / "metrics").exists() and temp_leftovers(project) == []


# ---- a shard's DALI index missing or cut short ------------------------------------------------


def _remove(path):
    path.unlink()
    return "missing DALI index (the shard stage writes one per tar)"


def _cut(path):
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # a copy that stopped mid-line
    return "complete sample line(s), the header says "


def _cut_at_a_line(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))  # whole lines, three samples short
    return f"{len(lines) - 4} complete sample line(s), the header says {len(lines) - 1} (rerun `sslflow shard`)"


@pytest.mark.parametrize("damage", [_remove, _cut, _cut_at_a_line], ids=["missing", "cut-mid-line", "lines-missing"])
def test_a_damaged_dali_index_is_named_before_training(tmp_path, tiny_project, damage):
    project = new_project(tmp_path / "p", tiny_project)
    (project / "data/shards").unlink()
    copy_outputs(tiny_project, project, ["data/shards"])
    index = project / "data/shards/train/shard-000003.idx"
    reason = damage(index)
    message = one_error_line(sslflow(project, "pretrain", "--method", METHOD), "sslflow pretrain")
    assert message.startswith("data/shards/train/shard-000003.idx: ") and reason in message, message
    assert sorted(p.name for p in project.iterdir()) == ["data", "params.yaml"]  # no models, metrics, dvclive
