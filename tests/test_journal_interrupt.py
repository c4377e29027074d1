"""Ctrl-C inside a journal write: the write ends whole, then the KeyboardInterrupt comes.

A study worker's stop landed just after Optuna's lock release had unlinked its lock file; its
`except BaseException` branch unlinked it again and the worker died with FileNotFoundError and
"internal error" instead of "study interrupted" (CI, test_study_workers.py)."""

import os
import signal
import threading

import optuna
import pytest
from optuna.storages.journal import _file as journal_file

from lrfind.study.journal import open_journal


@pytest.fixture
def python_sigint_handler():
    # as in a worker's `python -m lrfind` (a pytest-xdist worker may have its own)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_after_each_unlink(monkeypatch):
    real_unlink = os.unlink

    def unlink_then_sigint(path, *args, **kwargs):
        real_unlink(path, *args, **kwargs)
        # to the main thread: a process-directed signal may land on a pytest-xdist thread
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    monkeypatch.setattr(journal_file.os, "unlink", unlink_then_sigint)


def test_sigint_after_the_lock_release_unlink_is_a_keyboard_interrupt_and_the_write_lands(
        tmp_path, monkeypatch, python_sigint_handler):
    storage = open_journal(tmp_path / "s.journal")
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    _interrupt_after_each_unlink(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        trial.set_user_attr("steps_planned", 40)
    monkeypatch.undo()
    assert not list(tmp_path.glob("*.lock*"))  # the lock is released, no rename file left behind
    reread = optuna.load_study(study_name="s", storage=open_journal(tmp_path / "s.journal", create=False))
    assert reread.trials[0].user_attrs["steps_planned"] == 40


def test_optuna_alone_turns_that_interrupt_into_file_not_found(tmp_path, monkeypatch, python_sigint_handler):
    """The failure the deferral prevents, on Optuna's own backend: if a future Optuna mends its
    lock release, this test fails and the deferral can go."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / "s.journal"))))
    trial = study.ask()
    _interrupt_after_each_unlink(monkeypatch)
    with pytest.raises(FileNotFoundError):
        trial.set_user_attr("steps_planned", 40)
