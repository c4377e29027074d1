"""Ctrl-C while lrfind imports its command modules: one line and exit 130, never a Rust panic."""

import os
import signal

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
