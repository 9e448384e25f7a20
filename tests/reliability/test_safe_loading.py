"""Nothing a stage reads can run code: pickles refused, tar member names checked, YAML loaded safely.

Every torch.load in sslflow passes weights_only=True (checked here by reading the
source); a pickle that would run code when unpickled is fed to each stage that
loads one, and the stage refuses it in one line with the code not run.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import pytest
import torch

from sslflow.data.index import index_of_tar
from sslflow.data.read import iter_samples
from sslflow.errors import UserError

from .conftest import METHOD, copy_outputs, new_project, one_error_line, sslflow

PACKAGE = Path(__file__).resolve().parents[2] / "sslflow"


class Exploit:
    """Unpickling this creates the file named by `marker` (what an attacker's pickle could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_every_torch_load_is_weights_only():
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for match in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            calls.append((path.relative_to(PACKAGE).as_posix(), match.group(1)))
    assert calls, "no torch.load found: the check would prove nothing"
    assert [c for c in calls if "weights_only=True" not in c[1]] == []


@pytest.mark.parametrize(
    "stage, file",
    [
        ("extract", f"models/{METHOD}/encoder.pt"),
        ("linear", f"models/{METHOD}/encoder.pt"),
        ("pretrain", f"models/{METHOD}/last.pt"),
    ],
)
def test_pickled_code_is_refused(tmp_path, tiny_project, trained_project, stage, file):
    project = new_project(tmp_path / "p", tiny_project)
    if stage == "linear":
        copy_outputs(trained_project, project, [f"data/features/{METHOD}"])
    marker = tmp_path / "pwned"
    (project / file).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 1, "payload": Exploit(marker)}, project / file)

    message = one_error_line(sslflow(project, stage, "--method", METHOD), f"sslflow {stage}")
    assert message.startswith(f"{file}: "), message
    assert "unreadable" in message or "not a readable" in message
    assert not marker.exists(), "unpickling ran code"


def test_python_tag_in_params_is_refused_not_run(tmp_path, tiny_project):
    project = new_project(tmp_path / "p", tiny_project)
    marker = tmp_path / "pwned"
    params = project / "params.yaml"
    text, found = re.subn(
        r"^seed: .*$", f"seed: !!python/object/apply:os.system ['touch {marker}']", params.read_text(), flags=re.M
    )
    assert found == 1
    params.write_text(text)
    message = one_error_line(sslflow(project, "shard"), "sslflow shard")
    assert re.match(r"params.yaml: line \d+ not valid YAML: could not determine a constructor for the tag", message), (
        message
    )
    assert not marker.exists()


def shard_with_member(tmp_path: Path, name: str) -> Path:
    """A tar with one sample whose image member is called `name`."""
    path = tmp_path / "data/shards/train/shard-000000.tar"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in ((name, b"\x89PNG not really"), (name.rsplit(".", 1)[0] + ".cls", b"0")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["../../escape.png", "/etc/evil.png", "a/../../b.png"])
def test_tar_member_names_that_leave_the_shard_are_refused(tmp_path, name):
    tar = shard_with_member(tmp_path, name)
    with pytest.raises(UserError, match=f"^{re.escape(str(tar))}: unsafe member name {re.escape(repr(name))}"):
        index_of_tar(tar)
    with pytest.raises(UserError, match="unsafe member name"):
        list(iter_samples(tmp_path / "data/shards", "train"))
