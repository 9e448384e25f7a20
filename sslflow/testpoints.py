"""Named points at which a process stops itself (SIGSTOP), so that a test can signal it at a known state.

A test that interrupts a stage must catch it mid-work on any machine: polling for a
file and then signalling races a fast stage to its end, and a fixed delay fires at
different work on a faster or slower machine. With

    SSLFLOW_PAUSE_AT="NAME[:N][@ATTEMPT],..."

in the environment, a process stops itself the first time it passes point NAME
with a count of at least N (default 0), in torchrun restart attempt ATTEMPT
(default 0, the first; a single process is attempt 0). The test waits until the
kernel reports the process stopped (`state`), sends its signal, and continues it.
Each entry fires at most once per process. Outside tests the variable is unset
and a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SSLFLOW_PAUSE_AT"
_fired: set[str] = set()


def pause_point(name: str, count: int = 0) -> None:
    """Stop this process here if SSLFLOW_PAUSE_AT names this point (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    for entry in spec.split(","):
        point, _, when = entry.strip().partition("@")
        want, _, at_least = point.partition(":")
        if want != name or entry in _fired or count < int(at_least or 0) or attempt != int(when or 0):
            continue
        _fired.add(entry)
        os.kill(os.getpid(), signal.SIGSTOP)
