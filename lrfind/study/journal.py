"""Optuna's journal storage: the default of a study run by several local workers (`--workers N`).

A sqlite file serialises every write behind one database lock; with several processes that each
report, set attributes and ask the sampler (which reads all trials) it fails with "database is
locked" under load. Optuna's JournalStorage appends operations to one file under a lock of its own
(a symlink lock, broken after a grace period when a killed writer left it) and replays the file to
read: made for several processes on one machine (or a shared folder). It has no heartbeats; a
local worker that died is found by its pid (lrfind.study.storage.recover_dead_local_trials).

lrfind writes this storage as a URL, `journal:///PATH` (a relative PATH like sqlite:///'s), so that
--storage, the recommendation and `lrfind report`/`lrfind status` name it the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lrfind.errors import ConfigError
from lrfind.interrupts import sigint_deferred

JOURNAL_SCHEME = "journal:///"
JOURNAL_SUFFIX = ".journal"


def journal_url(path: Path) -> str:
    return JOURNAL_SCHEME + Path(path).as_posix()


def journal_path(url: str) -> Optional[Path]:
    """The file of a journal:/// URL, else None."""
    if not url.startswith(JOURNAL_SCHEME):
        return None
    path = url.removeprefix(JOURNAL_SCHEME)
    return Path(path) if path else None


def open_journal(path: Path, *, create: bool = True):
    """JournalStorage on `path` (its folder made); create=False: a missing file is a ConfigError
    (Optuna's backend would create an empty one, e.g. for a mistyped `lrfind status` name)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    class _InterruptSafeBackend(JournalFileBackend):
        """Appends under the file lock with Ctrl-C held until the lock is released: a worker's stop
        landing inside Optuna's lock release made it fail with FileNotFoundError (lrfind.interrupts)."""

        def append_logs(self, logs):
            with sigint_deferred():
                super().append_logs(logs)

    if not create and not path.is_file():
        raise ConfigError(f"study journal {path} does not exist; check the study NAME, --study-dir or --storage")
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(_InterruptSafeBackend(str(path)))
