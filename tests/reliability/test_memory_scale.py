"""Peak memory of the CPU-side stages does not grow with the number of images beyond the features themselves.

Each stage runs through the real CLI at two sizes of the same kind of ILSVRC-shaped
tree, 4x apart, and its peak RSS (the kernel's, via wait4) is compared. The method is
`raw_pixels`, whose features are wide (3 x 64 x 64 values a row, float16: ~24 KB an
image), so holding a split in memory shows: a stage that kept the features, the decoded
images or the shards' bytes would grow by tens of MB per 1,000 images. Linear's probe
is run with `resident_mb: 0`, the streamed path a split takes once its standardised
rows pass the resident budget (ImageNet's do), in chunks of 256 rows (a chunk's
memory is constant once a split has more rows than a chunk: 65,536 by default); the
mapped features file itself may count in its RSS, and nothing else may.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from sslflow.bench.trees import build_ilsvrc
from sslflow.bench.usage import measure
from tests.conftest import make_project

SIZES = (800, 4000)
MARGIN_MB = 40  # run-to-run spread of a stage's peak RSS is a few MB; holding the larger split costs 100s
METHOD = "raw_pixels"
SSLFLOW = str(Path(sys.executable).with_name("sslflow"))


def run_stages(root: Path, images: int) -> tuple[dict[str, float], float]:
    """({stage: peak RSS MB}, MB of the train features file) for one size."""
    tree = build_ilsvrc(root / f"tree-{images}", images, classes=20, jpeg_size=(160, 120), quality=95)
    project = make_project(
        root / f"project-{images}", {"source": str(tree), "layout": "imagenet", "class_names": None, "workers": 2}
    )
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["augment"]["size"] = 64
    # DALI's buffers fill over the first few batches and then stay: small batches reach that plateau
    # within the small split too, so what is compared is growth, not warm-up
    params["eval"]["extract"]["batch_size"] = 64
    params["eval"]["linear"].update(
        {"l2_grid": [1e-3], "max_iter": 3, "backend": "torch", "resident_mb": 0, "chunk_rows": 256}
    )
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    peaks = {}
    for stage in ("shard", "pretrain", "extract", "linear"):
        cmd = [SSLFLOW, stage] + ([] if stage == "shard" else ["--method", METHOD])
        usage = measure(cmd, cwd=project)
        assert usage.returncode == 0, usage.output[-3000:]
        peaks[stage] = usage.peak_rss_mb
    return peaks, (project / f"data/features/{METHOD}/train.npz").stat().st_size / 2**20


@pytest.fixture(scope="module")
def peaks(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory-scale")
    measured = {images: run_stages(root, images) for images in SIZES}
    print(f"peak RSS MB, train features MB: {measured}")
    return measured


@pytest.mark.parametrize("stage", ["shard", "extract"])
def test_peak_rss_is_flat_in_the_number_of_images(peaks, stage):
    (small, small_mb), (large, large_mb) = peaks[SIZES[0]], peaks[SIZES[1]]
    assert large_mb - small_mb > 1.5 * MARGIN_MB  # the features grow enough for a held copy to show
    growth = large[stage] - small[stage]
    assert growth <= MARGIN_MB, f"{stage}: peak RSS {small[stage]:.0f} -> {large[stage]:.0f} MB"


def test_linear_grows_by_the_mapped_features_at_most(peaks):
    (small, small_mb), (large, large_mb) = peaks[SIZES[0]], peaks[SIZES[1]]
    growth = large["linear"] - small["linear"]
    allowed = (large_mb - small_mb) * 1.15 + MARGIN_MB  # train + val files (val is 4% of train)
    assert growth <= allowed, (
        f"linear: peak RSS {small['linear']:.0f} -> {large['linear']:.0f} MB (allowed +{allowed:.0f})"
    )
