"""What a signal does to a stage, and the exit codes that say so. The one place for both.

SIGINT (Ctrl-C): Python's KeyboardInterrupt unwinds the stage; every atomic
  output (sslflow.atomic) removes its temporary file or folder on the way out,
  so nothing half-written is left where a finished output is expected. Exit 130.
SIGTERM (a scheduler's pre-emption, `kill`): the CLI turns it into
  `Terminated`, which unwinds like Ctrl-C. Exit 143. While pretraining trains,
  the loop takes SIGTERM first (sslflow.train.loop.StopRequest): it finishes
  the step, writes models/<method>/last.pt, and exits 143; the same command
  resumes from there.
SIGKILL: nothing runs. Outputs are still whole or absent, because they appear
  by rename only when complete; temporary names may remain and are replaced
  by the next run; pretraining resumes from the last periodic checkpoint
  (train.checkpoint_every). Shard workers die with their parent
  (PR_SET_PDEATHSIG, sslflow.data.shards).

A signal that lands inside a C extension's import (DALI's, say) surfaces as
the ImportError that import raises, with the signal's exception as its
cause: it still exits 130 / 143 (`exit_code_for`).

Bad input is not a signal: sslflow.errors.EXIT_USER_ERROR (2).
"""

from __future__ import annotations

import signal
import threading

INTERRUPTED_EXIT = 128 + signal.SIGINT  # 130
TERMINATED_EXIT = 128 + signal.SIGTERM  # 143


class Terminated(BaseException):
    """SIGTERM as an exception, like Ctrl-C's KeyboardInterrupt: cleanup code runs, then exit 143."""


def exit_code_for(exc: BaseException) -> int | None:
    """130 / 143 when `exc` is, or was raised while unwinding from, Ctrl-C or SIGTERM; None otherwise."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, KeyboardInterrupt):
            return INTERRUPTED_EXIT
        if isinstance(exc, Terminated):
            return TERMINATED_EXIT
        exc = exc.__cause__ or exc.__context__
    return None


def raise_on_sigterm():
    """Turn SIGTERM into Terminated in the main thread; return the handler it replaces (None elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)
