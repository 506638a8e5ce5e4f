"""The ``workbench`` command line: the parser of every command, ``main`` and the console script ``run``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from workbench.cli import window
from workbench.errors import WorkbenchError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = _file_means_open(parser, sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, message already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if not getattr(args, "command", None):
            return window.launch_gui(args)
        return args.run(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _file_means_open(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``workbench FILE`` (a desktop entry's ``%f``, "Open with") is ``workbench open FILE``."""
    commands = {name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                for name in action.choices}
    if len(argv) == 1 and argv[0] not in commands and Path(argv[0]).is_file():
        return ["open", argv[0]]
    return argv


class _Parser(argparse.ArgumentParser):
    """A bad argument is one ``error:`` line (exit 2), like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workbench", description="Model Surgery Workbench: inspect, freeze, "
                                     "fine-tune and export image backbones. Without a command, opens the window.")
    sub = parser.add_subparsers(dest="command")
    # Light: each command module imports its heavy dependencies only when it runs.
    from workbench.cli import (
        compare,
        demo,
        diff,
        evaluate,
        export,
        features,
        graph,
        inspect,
        look,
        plugins,
        predict,
        probe_depth,
        runs,
        schema,
        train,
    )

    for command in (plugins, inspect, train, demo, runs, predict, evaluate, export, window, diff, compare, schema,
                    look, graph, probe_depth, features):
        command.add_parser(sub)
    return parser


def run() -> int:
    """The ``workbench`` console script: ``main``, then the process ends without interpreter teardown.

    With torch and timm loaded, CPython's teardown (its last garbage collection, module
    clearing, torch's C++ static destructors, which page in code no command ran) costs
    ~0.2-1 CPU-s and raises the process's peak memory by 30-100 MiB after the work is done
    (measured with ``wait4``, ``benchmarks/RESULTS.md`` §3). Every file the command writes is
    closed by then; ``_end_process`` joins other threads, runs the ``atexit`` handlers (log
    flushing, lock release, loader worker shutdown) and flushes the output first. Not after
    the window (Qt objects are left to their own teardown order), and not in ``main`` (tests
    call it in-process).
    """
    code = main()
    if not window.launched:
        _end_process(code)
    return code


def _end_process(code: int) -> None:
    """Exit now with ``code``: other threads joined, ``atexit`` handlers run, output flushed; no teardown."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what CPython's own exit runs, in order (registered handlers, last first)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code)

