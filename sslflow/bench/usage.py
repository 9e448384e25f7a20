"""What a command cost: wall time, CPU time and peak resident memory of its process tree.

Peak RSS comes from the kernel's own accounting, `wait4`'s rusage of the child:
the largest resident set any process of its tree reached (the child, or a
worker it waited for). Nothing is sampled, so a short peak is not missed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Usage:
    command: str
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    output: str  # stdout and stderr, interleaved

    def check(self) -> Usage:
        """self, or exit naming the command and showing its output's tail when it failed."""
        if self.returncode != 0:
            sys.exit(f"{self.command} failed ({self.returncode}):\n{self.output[-4000:]}")
        return self


def measure(cmd: list[str], cwd: Path | str | None = None, env: dict | None = None) -> Usage:
    """Run cmd to completion and return its Usage (output captured through a file, so the child is
    reaped by wait4 here and its rusage is its own, not mixed with earlier children's)."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    return Usage(
        command=" ".join(map(str, cmd)),
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=rusage.ru_utime + rusage.ru_stime,
        peak_rss_mb=rusage.ru_maxrss / 1024,  # Linux reports kilobytes
        output=output,
    )
