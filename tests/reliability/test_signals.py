"""The exit code of a stage a signal stopped, even when the signal landed inside an import."""

from __future__ import annotations

import signal

from sslflow.signals import INTERRUPTED_EXIT, TERMINATED_EXIT, Terminated, exit_code_for


def _raised_during(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise ImportError("initialization failed") from inner  # what DALI's backend import raises
    except ImportError as outer:
        return outer


def test_exit_codes_are_128_plus_the_signal():
    assert (INTERRUPTED_EXIT, TERMINATED_EXIT) == (128 + signal.SIGINT, 128 + signal.SIGTERM) == (130, 143)


def test_a_signal_inside_an_import_keeps_its_exit_code():
    assert exit_code_for(_raised_during(Terminated())) == 143
    assert exit_code_for(_raised_during(KeyboardInterrupt())) == 130
    assert exit_code_for(_raised_during(ValueError("a bug"))) is None
    assert exit_code_for(RuntimeError("a bug")) is None
