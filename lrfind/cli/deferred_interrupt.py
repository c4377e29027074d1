"""Ctrl-C while the command modules import: held until the imports end, then raised as usual.

pydantic's Rust core panics (a `pyo3_runtime.PanicException` and two tracebacks, not a
KeyboardInterrupt) when SIGINT lands inside its import. A study's launcher sends its workers SIGINT
the moment the user presses Ctrl-C, and a worker that is still starting is inside those imports, so
`lrfind study --workers N` printed a Rust panic instead of one line (tests/test_study_workers.py).
Earlier still, a SIGINT inside Python's own start-up (its site module) ended a worker with a fatal
error and a traceback: the launcher starts workers with SIGINT blocked (lrfind.study.workers), and
the block below unblocks it, so a pending stop arrives here and is handled like the others.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """SIGINT inside the block is recorded, not raised; KeyboardInterrupt is raised when it ends.

    Only in the main thread and only where SIGINT has Python's default handler (main() also runs
    in-process: inside tests or the demo someone else may own the handler)."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not in_main_thread or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a study worker starts with it blocked
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt
