"""Ctrl-C while lrfind imports its command modules: one line and exit 130, never a Rust panic."""

import os
import signal
import threading

import pytest

import lrfind.cli as cli
from lrfind.cli.deferred_interrupt import interrupts_deferred


def test_sigint_inside_the_block_is_raised_when_it_ends():
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            reached_the_end = True  # the import that was running goes on to its end
    assert reached_the_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_sigint_no_interrupt_and_the_handler_is_back():
    with interrupts_deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_someone_elses_handler_is_left_alone():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_main_interrupted_while_building_its_parser_exits_130_with_one_line(monkeypatch, capsys):
    real_build = cli.build_parser

    def build_and_be_interrupted():
        parser = real_build()
        os.kill(os.getpid(), signal.SIGINT)
        return parser

    monkeypatch.setattr(cli, "build_parser", build_and_be_interrupted)
    assert cli.main(["dataset", "check", "nowhere"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "Traceback" not in err


def test_a_sigint_pending_from_start_up_is_taken_by_the_block():
    """A study worker starts with SIGINT blocked (lrfind.study.workers); one sent before Python
    has started stays pending and is delivered, deferred, when the block unblocks it."""
    # as in a worker's `python -m lrfind`: Python's own handler (a pytest-xdist worker has its own)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        # to this thread: a process-directed kill would go to another thread that does not block it
        # (pytest-xdist's), and be raised at once; a fresh worker process has only its main thread
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # pending: nothing happens yet
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGINT, previous)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_a_worker_stopped_while_python_starts_exits_130_with_one_line(tmp_path):
    """SIGINT at once after the launcher's spawn (Python's site module still importing): before,
    1 in a few such workers died with "Fatal Python error: init_import_site" and a traceback."""
    import subprocess
    import sys
    import time

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:  # as lrfind.study.workers starts a worker
        process = subprocess.Popen([sys.executable, "-m", "lrfind", "dataset", "check", str(tmp_path)],
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Fatal" not in err and err.count("\n") == 1
