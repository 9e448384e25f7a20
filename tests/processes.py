"""Helpers for tests that signal the processes they start."""

import signal
import socket
from pathlib import Path


def default_sigint() -> None:
    """Run in the child before exec (Popen's preexec_fn): SIGINT back to its default action.

    A shell starts background jobs with SIGINT ignored, and a Python started that
    way installs no KeyboardInterrupt handler, so a test's Ctrl-C would go unseen
    when the suite itself runs in the background (CI runners, `make test &`).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of a process (R running, S sleeping, T stopped, Z zombie), None once reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def free_port() -> int:
    """A TCP port nothing listens on now (for a rendezvous or a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
