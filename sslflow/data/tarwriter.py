"""One WebDataset shard: a plain ustar archive with fixed metadata, its sha256 and its DALI index.

Written block by block rather than through ``tarfile.TarFile`` so that the
hash and the data offsets for the index come from the same single pass over
the bytes; the archive is byte-identical to what ``tarfile`` writes for the
same members (mtime 0, uid/gid 0, empty user/group names, mode 0o644), which
the tests check.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

from sslflow.data.index import IndexEntry, format_index

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
JOIN_BELOW = 16 * 1024
FLUSH_AT = 1 << 20


def member_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of a regular file with the fixed metadata.

    Built directly (tarfile's TarInfo.tobuf costs ~60 us a member, as much as encoding a small
    PNG); `tarfile_header` is the reference it must equal.
    """
    encoded = name.encode("utf-8")
    if len(encoded) > 100:
        raise ValueError(f"member name longer than 100 bytes: {name}")
    head = encoded.ljust(100, b"\0") + _MODE_IDS + b"%011o\0" % size + _MTIME
    tail = _TYPE_TO_END
    checksum = _CHECKSUM_BASE + sum(head)
    return head + b"%06o\0 " % checksum + tail


def tarfile_header(name: str, size: int) -> bytes:
    """The same header as tarfile writes it, for the tests."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


_MODE_IDS = b"0000644\0" + b"0000000\0" * 2  # mode, uid, gid
_MTIME = b"00000000000\0"
# type '0' (regular file), no link name, ustar magic and version, empty user/group names,
# empty device numbers (as tarfile leaves them for regular files), no prefix, padding to 512
_TYPE_TO_END = b"0" + b"\0" * 100 + b"ustar\0" + b"00" + b"\0" * (64 + 16 + 155 + 12)
assert 148 + 8 + len(_TYPE_TO_END) == BLOCK
# the checksum counts its own field as eight spaces
_CHECKSUM_BASE = sum(b" " * 8) + sum(_TYPE_TO_END)


@dataclass(frozen=True)
class ShardInfo:
    """What the manifest records about a finished shard."""

    name: str
    samples: int
    sha256: str
    bytes: int


class ShardWriter:
    """Appends samples (one image member + one ``.cls`` member) to a new tar; `close` seals it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        # unbuffered: large images go straight to the kernel (a buffered file would copy them
        # once more); small pieces are gathered in `_pending` and written a megabyte at a time
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 (closed by close(), the writer outlives any block)
        self._pending = bytearray()
        self._hash = hashlib.sha256()
        self._offset = 0
        self._index: list[list[IndexEntry]] = []

    def add(self, key: str, ext: str, image: bytes, label: int) -> None:
        """Image member then label member. Small samples go in one write (and one hash update),
        as they are call-bound; a large image is written as it is rather than copied into a join."""
        image_name, label_name, label_bytes = f"{key}.{ext}", f"{key}.cls", str(label).encode("ascii")
        image_at = self._offset + BLOCK
        label_at = image_at + len(image) + (-len(image) % BLOCK) + BLOCK
        tail = b"".join(
            (
                b"\0" * (-len(image) % BLOCK),
                member_header(label_name, len(label_bytes)),
                label_bytes,
                b"\0" * (-len(label_bytes) % BLOCK),
            )
        )
        if len(image) < JOIN_BELOW:
            self._write(b"".join((member_header(image_name, len(image)), image, tail)))
        else:
            self._write(member_header(image_name, len(image)))
            self._write(image)
            self._write(tail)
        self._index.append(
            [
                IndexEntry(ext, image_at, len(image), image_name),
                IndexEntry("cls", label_at, len(label_bytes), label_name),
            ]
        )

    def close(self) -> ShardInfo:
        """End-of-archive blocks and record padding, as tarfile writes them; then the index next to the tar."""
        end = 2 * BLOCK
        end += -(self._offset + end) % RECORD
        self._write(b"\0" * end)
        self._flush()
        self._file.close()
        self.path.with_suffix(".idx").write_text(format_index(self._index))
        return ShardInfo(self.path.name, len(self._index), self._hash.hexdigest(), self._offset)

    def abort(self) -> None:
        self._file.close()

    def _write(self, data: bytes) -> None:
        self._hash.update(data)
        self._offset += len(data)
        if len(data) < JOIN_BELOW:
            self._pending += data
            if len(self._pending) >= FLUSH_AT:
                self._flush()
        else:
            self._flush()
            self._write_all(data)

    def _flush(self) -> None:
        if self._pending:
            self._write_all(self._pending)
            self._pending.clear()

    def _write_all(self, data) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]
