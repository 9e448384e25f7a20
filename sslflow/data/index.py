"""DALI's WebDataset index (``.idx``), the text ``wds2idx`` writes, made from known offsets.

Format v1.2: a line ``v1.2 <samples>``, then one line per sample listing each
member as ``<ext> <data offset> <size> <member name>``. DALI's
``fn.readers.webdataset(index_paths=...)`` seeks with it instead of scanning
the tar; ``wds2idx`` would have to re-read every shard (through GNU tar) to
learn offsets the writer already knows.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import NamedTuple

from sslflow.errors import UserError

VERSION = "v1.2"


class IndexEntry(NamedTuple):
    ext: str
    offset: int
    size: int
    name: str


def format_index(samples: list[list[IndexEntry]]) -> str:
    lines = [f"{VERSION} {len(samples)}"]
    lines += [" ".join(f"{e.ext} {e.offset} {e.size} {e.name}" for e in sample) for sample in samples]
    return "\n".join(lines) + "\n"


def unsafe_member_name(name: str) -> bool:
    """An absolute member name, or one that climbs out with '..'.

    No shard sslflow writes has one (members are `<key>.<ext>`), and a tool that
    unpacks such a tar would write outside its folder: every reader refuses it.
    """
    return name.startswith("/") or ".." in name.split("/")


def index_of_tar(path: Path) -> str:
    """The index of an existing tar, read with tarfile (what `--verify` compares the .idx to)."""
    samples: list[list[IndexEntry]] = []
    last_key = None
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if unsafe_member_name(member.name):
                raise UserError(f"{path}: unsafe member name {member.name!r}")
            if not member.isreg():
                continue
            key, _, ext = member.name.partition(".")
            entry = IndexEntry(ext, member.offset_data, member.size, member.name)
            if key == last_key:
                samples[-1].append(entry)
            else:
                samples.append([entry])
                last_key = key
    return format_index(samples)
