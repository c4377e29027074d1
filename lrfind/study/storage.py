"""Opening a study in Optuna's RDB storage, and telling which worker runs a trial.

Each trial records its worker's host, pid and process start time (WORKER_ATTR), so that a trial
whose worker died on THIS machine (kill -9, power loss) is recognised at once, without waiting for
the heartbeat's grace period; lrfind.study.worker_storage fails such trials, with a reason.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional

from lrfind.errors import ConfigError
from lrfind.secrets import mask_text, mask_url, password_needs_encoding, remember
from lrfind.study.journal import journal_path, open_journal

SCHEMA_RACE_RETRIES = 4
WORKER_ATTR = "lrfind_worker"  # {"host": ..., "pid": ..., "started": process start time}


def engine_url(url: str) -> str:
    """The URL sqlalchemy should open: a bare postgresql:// gets the driver that is installed.

    SQLAlchemy 2.1 maps postgresql:// to psycopg (3); lrfind's `postgres` extra installs
    psycopg2-binary. Prefer psycopg when both are there; an explicit postgresql+DRIVER:// is kept.
    """
    import importlib.util

    problem = password_needs_encoding(url)
    if problem:
        raise ConfigError(f"--storage: {problem}")
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    rest = url.split("://", 1)[1]
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}://{rest}"
    raise ConfigError(f"--storage {mask_url(url)} needs a PostgreSQL driver: pip install 'lrfind[postgres]' "
                      "(psycopg2-binary) or psycopg[binary]")


def process_start_time(pid: int) -> Optional[float]:
    """The kernel's start time of pid (ticks since boot), to tell a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return float(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def worker_identity() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start_time(os.getpid())}


def worker_is_alive(worker: dict) -> bool:
    if worker.get("host") != socket.gethostname():
        return True  # another machine's worker: only its heartbeat can tell
    started = process_start_time(int(worker.get("pid", -1)))
    return started is not None and started == worker.get("started")


def sqlite_path(url: str) -> Optional[Path]:
    """The database file of a sqlite:/// URL (relative or absolute), else None."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


class SqliteDatabase:
    """Guards a study's sqlite file for one process: workers on one machine create it one at a time,
    and a study that fails leaves no database it created and nothing was stored in.

    Optuna creates its tables on first open; two processes doing that together on a new file race
    ("table studies already exists", "UNIQUE constraint failed: alembic_version"). An exclusive
    flock on the database file itself (sqlite locks with fcntl byte ranges, which flock does not
    touch on Linux) serialises the creation; afterwards each worker holds a shared flock while it
    runs, so a failing worker can tell whether another still uses the file before removing it.
    """

    def __init__(self, path: Path):
        self.path, self.fd, self.created = path, None, False

    def __enter__(self) -> "SqliteDatabase":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            self.created = not self.path.exists() or self.path.stat().st_size == 0
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            if self.path.exists() and os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                return self
            os.close(self.fd)  # a failing worker removed the file meanwhile: open the new one

    def opened(self) -> None:
        """Tables and study exist: let other workers open the file too."""
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_SH)

    def __exit__(self, exc_type, exc, tb) -> None:
        import fcntl

        try:
            if exc_type is not None and self.created:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while another worker runs
                except BlockingIOError:
                    return
                if not _holds_trials(self.path):
                    self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


def _holds_trials(path: Path) -> bool:
    import sqlite3
    from contextlib import closing

    try:
        with closing(sqlite3.connect(path)) as db:
            return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] > 0
    except sqlite3.Error:  # no tables yet (an empty file), or not a database: nothing stored
        return False


def open_storage(url: str, heartbeat_interval: int, grace_period: int, storage_class=None):
    """The study's RDB storage; storage_class: an RDBStorage subclass (a worker's: worker_storage)."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    remember(url)  # its password is masked in every message and log record from now on
    if journal_path(url) is not None:  # several local workers (lrfind.study.journal)
        return open_journal(journal_path(url))
    if sqlite_path(url) is not None:
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    opened = engine_url(url)
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental": not worth a warning on every run
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return (storage_class or RDBStorage)(opened, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
                                  engine_kwargs={"pool_pre_ping": True})
        except Exception as err:  # noqa: BLE001 - any driver/connection error: one line, password masked
            # Workers started together on an empty database race to create Optuna's tables; the
            # loser sees a duplicate-key error, and the tables exist when it tries again.
            if attempt < SCHEMA_RACE_RETRIES and _schema_race(err):
                import time

                time.sleep(0.5 * (attempt + 1))
                continue
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"cannot open study storage {mask_url(url)}: {mask_text(reason, url)}; "
                              "check --storage (and that the database server runs)") from None


def _schema_race(err: Exception) -> bool:
    # PostgreSQL: "duplicate key"; another database's worker creating the same tables: "already
    # exists" / a unique constraint on Optuna's alembic_version row.
    text = str(err).lower()
    return any(s in text for s in ("duplicate key", "already exists", "unique constraint failed: alembic_version"))


def _retry_callback():
    """Optuna's retry of a failed trial, for a storage without heartbeats (journal)."""
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=2)


def recover_dead_local_trials(study) -> list[int]:
    """Fail (and re-enqueue) RUNNING trials whose worker on this machine no longer exists."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    recovered = []
    get_callback = getattr(study._storage, "get_heartbeat_stale_trial_callback", None)  # journal: none
    callback = get_callback() if get_callback else _retry_callback()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if not worker or worker_is_alive(worker):
            continue
        try:  # the reason first: a finished trial's attributes can no longer be set
            study._storage.set_trial_user_attr(
                trial._trial_id, "fail_reason",
                f"worker {worker.get('host')} pid {worker.get('pid')} died (its process is gone: killed or "
                f"crashed); found by {socket.gethostname()} pid {os.getpid()}'s process check (this storage "
                "keeps no heartbeats); retried as a new trial")
            if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another worker got there first
        if callback is not None:
            callback(study, study._storage.get_trial(trial._trial_id))
        recovered.append(trial.number)
    return recovered
