"""How the CLI shows live status lines (lrfind.study.progress): on a terminal a running trial's line
is rewritten in place; in a log (not a TTY) every line is its own, with no carriage returns, and a
trial's lines come at most every LOG_INTERVAL_S seconds."""

from __future__ import annotations

import shutil
import sys
import time

LOG_INTERVAL_S = 30.0


class StatusPrinter:
    def __init__(self, stream=None, log_interval_s: float = LOG_INTERVAL_S, rewrite: bool = True):
        """rewrite=False: log lines even on a terminal (several workers share one)."""
        self.stream = stream or sys.stdout
        self.tty = rewrite and self.stream.isatty()
        self.interval, self.last, self.pending = log_interval_s, -float("inf"), False

    def __call__(self, text: str, transient: bool) -> None:
        if transient and self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + text[:width].ljust(width))
            self.pending = True
        elif transient:
            now = time.monotonic()
            if now - self.last < self.interval:
                return
            self.last = now
            self.stream.write(text + "\n")
        else:
            self.stream.write(("\n" if self.pending else "") + text + "\n")
            self.pending = False
        self.stream.flush()
