"""`sslflow augment preview` writes one PNG grid per view; `sslflow bench loader` measures both backends."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from sslflow.augment import preview
from sslflow.bench import loader as bench
from sslflow.data.manifest import load_manifest
from sslflow.errors import UserError
from tests.augment.conftest import params_in


@pytest.fixture
def scratch_project(tiny_project, tmp_path, monkeypatch):
    """A writable project that reads the shared tiny shards."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "shards").symlink_to(tiny_project / "data" / "shards")
    (tmp_path / "params.yaml").write_text((tiny_project / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_preview_writes_a_grid_per_kind(scratch_project, capsys):
    params = params_in(scratch_project)
    written = preview.run(params, kinds="simclr,rotation,relpos", rows=3, views=4)
    assert [p.name for p in written] == ["simclr.png", "rotation.png", "relpos.png"]
    widths = {}
    for path in written:
        image = np.asarray(Image.open(scratch_project / path))
        assert image.ndim == 3 and image.shape[0] > 300 and image[..., :3].std() > 20  # drawn, not blank
        widths[path.name] = image.shape[1]
    assert widths["simclr.png"] > widths["rotation.png"]  # source + 4 views against 4 rotations
    assert "reports/augment/simclr.png: 3 rows x 5 columns (dali backend)" in capsys.readouterr().out


def test_bench_reports_images_per_second_of_both_backends(scratch_project, capsys):
    params = params_in(scratch_project)
    rows = bench.run(
        params,
        kinds="simclr,eval",
        backends="dali,torchvision",
        batch_size=50,
        seconds=0.2,
        warmup=1,
        json=scratch_project / "bench.json",
    )
    assert [(r["backend"], r["kind"]) for r in rows] == [
        ("dali", "simclr"),
        ("dali", "eval"),
        ("torchvision", "simclr"),
        ("torchvision", "eval"),
    ]
    assert all(r["images_per_s"] > 0 and r["batches"] >= 1 and r["size"] == 28 for r in rows)
    assert rows[0]["views_per_s"] == pytest.approx(2 * rows[0]["images_per_s"], rel=1e-3)
    assert json.loads((scratch_project / "bench.json").read_text()) == rows
    assert "simclr: dali / torchvision = " in capsys.readouterr().out
    with pytest.raises(UserError, match="--kinds simclr,sim: expected"):
        bench.run(params, kinds="simclr,sim")


def test_bench_times_epochs_of_the_1pct_subset_carried_and_rebuilt(scratch_project, capsys):
    rows = bench.run(params_in(scratch_project), kinds="eval", backends="dali", seconds=0.1, warmup=1, epochs=3)
    row = rows[-1]
    assert (row["measure"], row["backend"], row["images"], row["epochs"]) == ("epochs of the 1% subset", "dali", 10, 3)
    assert row["carried_s_per_epoch"] > 0 and row["rebuilt_s_per_epoch"] > 0
    ratio = row["rebuilt_s_per_epoch"] / row["carried_s_per_epoch"]
    assert row["rebuilt_over_carried"] == pytest.approx(ratio, abs=0.006)  # rounded to 0.01
    assert f"built / carried = {row['rebuilt_over_carried']:.2f}x" in capsys.readouterr().out


def test_bench_generates_imagenet_sized_jpeg_shards():
    with bench.synthetic_jpeg_project(images=12, classes=3) as project:
        manifest = load_manifest(project / "data" / "shards")
        assert manifest["channels"] == 3 and manifest["splits"]["train"]["count"] == 12
        tar = next((project / "data" / "shards" / "train").glob("*.idx")).read_text()
        assert ".jpg" in tar and ".png" not in tar
        from sslflow.augment.catalogue import load_catalogue

        cat = load_catalogue(project / "data" / "shards", "train")
        image = Image.open(io.BytesIO(cat.read_image(0)))
        assert image.size == bench.JPEG_SIZE and image.format == "JPEG"
        assert 40_000 < np.mean(cat.image[:, 1]) < 150_000  # ILSVRC-like bytes per image
    assert not project.exists()


def test_generated_jpegs_are_the_same_on_any_number_of_workers(tmp_path):
    """Each image has its own seed: the parallel set of a GPU node's 16 cores is the serial one."""
    bench.write_jpeg_folder(tmp_path / "serial", images=6, classes=2, seed=3, workers=1)
    bench.write_jpeg_folder(tmp_path / "parallel", images=6, classes=2, seed=3, workers=2)
    serial = {p.relative_to(tmp_path / "serial"): p.read_bytes() for p in (tmp_path / "serial").rglob("*.jpg")}
    parallel = {p.relative_to(tmp_path / "parallel"): p.read_bytes() for p in (tmp_path / "parallel").rglob("*.jpg")}
    assert len(serial) == 6 + 2 and serial == parallel  # 6 train, 2 val (one a class)
    assert len(set(serial.values())) == len(serial)  # every image distinct


def test_bench_shards_writes_once_and_refuses_to_overwrite(tmp_path, capsys):
    from sslflow.bench import shards

    to = tmp_path / "jpeg"
    shards_dir = shards.run(None, to=to, images=4, classes=2, workers=1)
    assert shards_dir == to / "data" / "shards" and load_manifest(shards_dir)["splits"]["train"]["count"] == 4
    assert not (tmp_path / "jpeg.partial").exists() and not (to / "source").exists()
    with pytest.raises(UserError, match=f"^{to}: already exists; remove it or pass it to --shards as {shards_dir}$"):
        shards.run(None, to=to, images=4, classes=2, workers=1)
