"""`sslflow <command> [--params FILE] [-S key=value ...] [command options]`.

Each command lives in its own module, imported only when it runs (torch and DALI
are slow to import). A command module provides ``run(params, **options)`` and,
when it takes options, ``add_arguments(parser)``. Bad input raises
:class:`~sslflow.errors.UserError`, printed here as one line with exit code 2;
a bad command line is bad input too. Ctrl-C and SIGTERM end a command through
an exception, so that atomic outputs remove their temporary files
(sslflow.signals says what each signal does, and the exit codes).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
from types import ModuleType

from sslflow.errors import EXIT_USER_ERROR, UserError
from sslflow.signals import INTERRUPTED_EXIT, TERMINATED_EXIT, Terminated, exit_code_for, raise_on_sigterm

_IMPORTED = time.perf_counter()

# command words -> module with run(params, **options)
COMMANDS: dict[tuple[str, ...], str] = {
    ("shard",): "sslflow.stages.shard",
    ("pretrain",): "sslflow.stages.pretrain",
    ("extract",): "sslflow.stages.extract",
    ("linear",): "sslflow.stages.linear",
    ("lowlabel",): "sslflow.stages.lowlabel",
    ("report",): "sslflow.stages.report",
    ("export",): "sslflow.stages.export",
    ("augment", "preview"): "sslflow.augment.preview",
    ("bench", "loader"): "sslflow.bench.loader",
    ("bench", "pretrain"): "sslflow.bench.pretrain",
    ("bench", "shards"): "sslflow.bench.shards",
    ("flow", "pipeline"): "sslflow.flows",
    ("flow", "sweep"): "sslflow.flows",
}
COMMON_OPTIONS = ("params", "set")
# SSLFLOW_TIMES=FILE: every command appends one JSON line to FILE (benchmarks/stage_times.py reads them)
TIMES_ENV = "SSLFLOW_TIMES"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are UserErrors: one line and exit 2, as for any other bad input."""

    def error(self, message: str):
        raise UserError(message)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    code = 1
    try:
        code = _main(argv)
        return code
    finally:
        _record_time(argv, code)


def _main(argv: list[str]) -> int:
    words = _match_command(argv)
    if words is None:
        _usage()
        return EXIT_USER_ERROR
    prog = "sslflow " + " ".join(words)
    previous = raise_on_sigterm()
    try:
        module = importlib.import_module(COMMANDS[words])
        options = _parse(module, prog, words, argv[len(words) :])
        from sslflow.params import load_params

        if words[0] == "flow":
            _refuse_other_params(options)
        params = load_params(options.pop("params"), options.pop("set"))
        runner = getattr(module, "run_" + words[-1]) if words[0] == "flow" else module.run
        runner(params, **options)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return TERMINATED_EXIT
    except Exception as exc:  # a signal that landed inside an import surfaces as that import's error
        code = exit_code_for(exc)
        if code is None:
            raise
        print(f"{prog}: {'interrupted' if code == INTERRUPTED_EXIT else 'terminated'}", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _record_time(argv: list[str], code: int) -> None:
    """With SSLFLOW_TIMES set: what ran, its wall seconds since the process started (the interpreter
    and every import included: what each of a pipeline's stage processes costs), and its exit code."""
    path = os.environ.get(TIMES_ENV)
    if not path:
        return
    record = {"command": " ".join(argv), "seconds": round(_process_age(), 3), "exit": code}
    if "RANK" in os.environ:
        record["rank"] = int(os.environ["RANK"])
    with open(path, "a") as log:
        log.write(json.dumps(record) + "\n")


def _process_age() -> float:
    """Seconds since this process started (Linux /proc; elsewhere since the CLI was imported)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def _refuse_other_params(options: dict) -> None:
    """The flows run dvc.yaml's stages, which read params.yaml; other params would be silently ignored."""
    if options["params"] != "params.yaml" or options["set"]:
        raise UserError(
            "the flows run dvc.yaml's stages on params.yaml: edit it, or vary params with "
            "`sslflow flow sweep --grid KEY=V1,V2` (DVC experiments)"
        )


def _parse(module: ModuleType, prog: str, words: tuple[str, ...], rest: list[str]) -> dict:
    parser = _Parser(prog=prog, description=(module.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument(
        "-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="override a param, as `dvc exp run -S`"
    )
    adder = getattr(module, f"add_arguments_{words[-1]}" if words[0] == "flow" else "add_arguments", None)
    if adder is not None:
        adder(parser)
    return vars(parser.parse_args(rest))


def _match_command(argv: list[str]) -> tuple[str, ...] | None:
    for words in sorted(COMMANDS, key=len, reverse=True):
        if tuple(argv[: len(words)]) == words:
            return words
    return None


def _usage() -> None:
    names = "\n".join("  sslflow " + " ".join(w) for w in COMMANDS)
    print(f"usage: sslflow <command> [--params FILE] [-S key=value ...]\n\ncommands:\n{names}", file=sys.stderr)
