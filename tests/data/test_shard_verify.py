"""`sslflow shard --verify` against intact, truncated and changed shards (a copy of tiny_project's)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SSLFLOW = str(Path(sys.executable).with_name("sslflow"))


@pytest.fixture
def copy(tiny_project, tmp_path) -> Path:
    project = tmp_path / "p"
    shutil.copytree(tiny_project, project)
    return project


def verify(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SSLFLOW, "shard", "--verify"], cwd=project, capture_output=True, text=True, timeout=120)


def problems(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("sslflow shard: error: data/shards: ") and "problem(s) found" in lines[-1]
    return lines[:-1]


def test_intact_shards_pass(copy):
    result = verify(copy)
    assert result.returncode == 0, result.stderr
    assert "12 shards, 1200 samples match the manifest" in result.stdout


def test_truncated_tar(copy):
    tar = copy / "data/shards/train/shard-000003.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2 + 100])
    lines = problems(verify(copy))
    assert any(l.startswith("data/shards/train/shard-000003.tar: truncated or corrupt tar") for l in lines)
    assert "data/shards/train/shard-000003.tar: sha256 differs from the manifest (changed or truncated)" in lines
    assert any(
        l.startswith("data/shards/train/shard-000003.tar: ") and "samples, the manifest says" in l for l in lines
    )
    # everything else reported follows from the lost samples: split counts and subset keys
    assert all("shard-000003" in l or l.startswith(("data/shards/train: ", "data/shards/subsets/")) for l in lines)


def test_changed_byte_in_an_image(copy):
    tar = copy / "data/shards/val/shard-000001.tar"
    data = bytearray(tar.read_bytes())
    data[512 + 100] ^= 0xFF  # inside the first image's data
    tar.write_bytes(bytes(data))
    assert problems(verify(copy)) == [
        "data/shards/val/shard-000001.tar: sha256 differs from the manifest (changed or truncated)"
    ]


def test_manifest_counts_and_missing_index(copy):
    manifest_path = copy / "data/shards/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["splits"]["val"]["per_class"]["Bag"] = 21
    manifest_path.write_text(json.dumps(manifest))
    (copy / "data/shards/train/shard-000000.idx").unlink()
    assert sorted(problems(verify(copy))) == [
        "data/shards/train/shard-000000.idx: missing",
        "data/shards/val: 20 samples of class 'Bag', the manifest says 21",
    ]


def test_no_manifest(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    result = verify(tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "sslflow shard: error: data/shards/manifest.json: not found (run `sslflow shard` first)"
    )


def test_raw_member_of_another_size(copy):
    """A raw image must be exactly the manifest's H x W x C bytes: a row short is not a 28 x 28 image."""
    import tarfile

    tar = copy / "data/shards/val/shard-000001.tar"
    rebuilt = copy / "rebuilt.tar"
    with tarfile.open(tar) as src, tarfile.open(rebuilt, "w", format=tarfile.USTAR_FORMAT) as dst:
        for n, member in enumerate(src):
            data = src.extractfile(member).read()
            if n == 0:
                assert member.name.endswith(".raw") and len(data) == 784
                data, first = data[:-28], member.name.split(".")[0]
            fresh = tarfile.TarInfo(member.name)
            fresh.size = len(data)
            dst.addfile(fresh, io.BytesIO(data))
    rebuilt.replace(tar)
    lines = problems(verify(copy))
    wrong = f"data/shards/val/shard-000001.tar: sample {first}: raw member of 756 bytes, the manifest's shape makes 784"
    assert wrong in lines


def test_encoding_in_the_manifest_is_the_one_checked(copy):
    manifest_path = copy / "data/shards/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["encoding"], manifest["shape"] = "encoded", None
    manifest_path.write_text(json.dumps(manifest))
    wanted = "image members ['raw'], the manifest's encoding wants one jpg|png"
    wrong_kind = [line for line in problems(verify(copy)) if line.endswith(wanted)]
    assert len(wrong_kind) == 1200  # every sample of both splits
