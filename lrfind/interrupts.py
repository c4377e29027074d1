"""Ctrl-C held back across a few lines that must not be cut in half, then raised as usual.

A study worker takes its stop as a SIGINT (lrfind.study.workers sends one to each worker), and
Python raises the KeyboardInterrupt at whatever bytecode runs next. Inside Optuna's journal lock
that is not safe: `JournalFileSymlinkLock.release` renames the lock and unlinks it, and an
interrupt landing just after the unlink sends it to its `except BaseException` branch, which
unlinks the same file again; the FileNotFoundError replaces the KeyboardInterrupt and the worker
ends with "internal error" and two tracebacks instead of "study interrupted" (seen in CI,
tests/test_study_workers.py::test_ctrl_c_stops_every_worker...).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """SIGINT inside the block is recorded, not raised; KeyboardInterrupt is raised when it ends.

    Only in the main thread (the only one Python delivers signals to, and the only one that may
    set a handler) and only where SIGINT has Python's default handler: someone else's handler
    (a test's, the demo's caller's) is left alone."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt
