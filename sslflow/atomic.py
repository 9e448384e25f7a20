"""Atomic outputs: a finished path appears whole or not at all.

Work happens in a hidden sibling (same filesystem, so the final rename is
atomic); on any exception, Ctrl-C included, the sibling is removed and whatever
was at the destination before is left as it was. A process killed outright
(SIGKILL, a power cut) cannot clean up: its sibling carries the host and pid
that made it, and the next write of the same destination removes siblings whose
process is gone.

A full disk (or quota, or a file-size limit) is bad input, not a bug: it becomes a
UserError naming the destination.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sslflow.errors import UserError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no room: disk, quota, file-size limit


@contextmanager
def atomic_dir(dest: Path | str) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `dest` when the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(dest)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(dest, "tmp"), dir=dest.parent))
    try:
        with _disk_full_names(dest):
            yield tmp
        tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would make the output private
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(dest, "old"), dir=dest.parent))
            dest.rename(old / dest.name)
            tmp.rename(dest)
            shutil.rmtree(old)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(dest: Path | str, mode: str = "wb") -> Iterator[Any]:
    """Yield an open temporary file that replaces `dest` (fsynced) when the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(dest)
    fd, name = tempfile.mkstemp(prefix=_prefix(dest, "tmp"), dir=dest.parent)
    try:
        with _disk_full_names(dest), os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 would make the output private
        os.replace(name, dest)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary path for libraries that write by name (np.savez, torch.save, savefig).

    The path has `dest`'s own name, inside a temporary directory: some writers record
    the name they were given (torch.save names the zip's root folder after it), and a
    random name there would make identical weights hash differently, so DVC would
    rerun every stage downstream of a rerun that changed nothing.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(dest)
    folder = Path(tempfile.mkdtemp(prefix=_prefix(dest, "tmp"), dir=dest.parent))
    path = folder / dest.name
    try:
        with _disk_full_names(dest):
            yield path
        os.chmod(path, 0o666 & ~_umask())
        os.replace(path, dest)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_json(dest: Path | str, obj: Any) -> None:
    with atomic_file(dest, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")


def sweep_stale(dest: Path | str) -> list[Path]:
    """Remove the temporary siblings of `dest` left by processes of this host that no longer run.

    Siblings of live processes (another write of the same path under way) and of
    other hosts (a shared filesystem: their pids mean nothing here) are kept.
    """
    dest = Path(dest)
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(tmp|old)-{re.escape(_host())}-(\d+)-")
    removed = []
    for sibling in dest.parent.glob(f".{glob.escape(dest.name)}.*-{glob.escape(_host())}-*"):
        match = pattern.match(sibling.name)
        if match and not _alive(int(match.group(2))):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


def _prefix(dest: Path, kind: str) -> str:
    return f".{dest.name}.{kind}-{_host()}-{os.getpid()}-"


def _host() -> str:
    """The host name as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _umask() -> int:
    """This process's umask, read without setting it (os.umask would change it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _disk_full_names(dest: Path) -> Iterator[None]:
    """A full disk (or quota) while writing `dest` becomes one line naming `dest`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise UserError(f"{dest}: {os.strerror(exc.errno)} while writing it; nothing was written") from None
