"""Command line: parse, build one validated config, call the library, map errors to exit codes.

Exit codes: 0 ok, 2 bad input or a diverged run (one line, no traceback), 1 internal error.
Subcommand modules import torch and friends lazily inside their `run`, so `lrfind --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
import warnings

from lrfind import __version__
from lrfind.cli.deferred_interrupt import interrupts_deferred
from lrfind.errors import Interrupted, LrfindError, LrfindWarning, TrainingStopped
from lrfind.secrets import mask_text

# command name -> module under lrfind.cli that defines register(subparsers) and run(args) -> int
COMMANDS = {
    "dataset": "lrfind.cli.dataset_cmd",
    "model": "lrfind.cli.model_cmd",
    "train": "lrfind.cli.train_cmd",
    "probe": "lrfind.cli.probe_cmd",
    "study": "lrfind.cli.study_cmd",
    "report": "lrfind.cli.report_cmd",
    "status": "lrfind.cli.status_cmd",
    "export-kohya": "lrfind.cli.export_cmd",
    "demo": "lrfind.cli.demo_cmd",
}


class _Parser(argparse.ArgumentParser):
    """argparse already exits with code 2 on bad usage; keep its message to one line plus usage."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrfind", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"lrfind {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """lrfind's own warnings as one line each; any other warning as Python shows it."""
    if issubclass(category, LrfindWarning):
        print(f"lrfind: warning: {mask_text(str(message))}", file=sys.stderr)
    else:
        warnings._showwarning_orig(message, category, filename, lineno, file, line)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    try:
        with interrupts_deferred():  # a worker stopped while it starts: see lrfind.cli.deferred_interrupt
            parser = build_parser()
    except KeyboardInterrupt:
        print("lrfind: interrupted before it started; nothing was written", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `lrfind train --num-processes` relaunches it
    if not getattr(args, "func", None):
        parser.print_help()
        return 2 if args.command is None else 0
    previous_show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return _run(args)
    finally:
        warnings.showwarning = previous_show  # main() also runs in-process (tests, the demo)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except (LrfindError, TrainingStopped) as err:  # a diverged run is the user's lr, not our bug
        print(f"lrfind: error: {mask_text(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # one line: the command's own (how to resume), else the generic one
        said = str(err) if isinstance(err, Interrupted) else ""
        print(f"lrfind: {said or 'interrupted; files written so far are complete (atomic writes)'}", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - anything else is our bug: say so, keep the traceback
        from lrfind.atomic import is_disk_full

        if is_disk_full(err):  # a write lrfind does not make itself (a library's log file, ...)
            reason = mask_text(str(err).splitlines()[0]) if str(err) else type(err).__name__
            print(f"lrfind: error: disk full ({reason}); free space on that disk or write to another folder, "
                  "then run again", file=sys.stderr)
            return 2
        print(mask_text(traceback.format_exc()), end="", file=sys.stderr)  # no storage password in it
        print("lrfind: internal error (a bug in lrfind); please report it with the traceback above",
              file=sys.stderr)
        return 1
