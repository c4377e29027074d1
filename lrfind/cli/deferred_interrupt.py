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
from contextlib import contextmanager
from typing import Iterator

from lrfind.interrupts import sigint_deferred


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """SIGINT inside the block is recorded, not raised; KeyboardInterrupt is raised when it ends
    (lrfind.interrupts.sigint_deferred), and a study worker's blocked SIGINT is unblocked in it."""
    with sigint_deferred():
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            # ours is installed: a stop that was pending while the worker started arrives now, recorded
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a study worker starts with it blocked
        yield
