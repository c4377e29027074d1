"""Opening a study in Optuna's RDB storage, and telling which worker runs a trial.

Each trial records its worker's host, pid and process start time (WORKER_ATTR), so that a trial
whose worker died on THIS machine (kill -9, power loss) is recognised at once, without waiting for
the heartbeat's grace period; lrfind.study.worker_storage fails such trials, with a reason.
"""

from __future__ import annotations

import os
import socket
from typing import Optional

SCHEMA_RACE_RETRIES = 4
WORKER_ATTR = "lrfind_worker"  # {"host": ..., "pid": ..., "started": process start time}


def masked_url(url: str) -> str:
    """The storage URL with any password replaced by ***: safe to print and log."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL sqlalchemy knows: print nothing secret
        return url.split("@")[-1] if "@" in url else url


def engine_url(url: str) -> str:
    """The URL sqlalchemy should open: a bare postgresql:// gets the driver that is installed.

    SQLAlchemy 2.1 maps postgresql:// to psycopg (3); lrfind's `postgres` extra installs
    psycopg2-binary. Prefer psycopg when both are there; an explicit postgresql+DRIVER:// is kept.
    """
    import importlib.util

    if not url.startswith(("postgresql://", "postgres://")):
        return url
    rest = url.split("://", 1)[1]
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}://{rest}"
    from lrfind.errors import ConfigError

    raise ConfigError(f"--storage {masked_url(url)} needs a PostgreSQL driver: pip install 'lrfind[postgres]' "
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


def open_storage(url: str, heartbeat_interval: int, grace_period: int, storage_class=None):
    """The study's RDB storage; storage_class: an RDBStorage subclass (a worker's: worker_storage)."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
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
            if attempt < SCHEMA_RACE_RETRIES and "duplicate key" in str(err).lower():
                import time

                time.sleep(0.5 * (attempt + 1))
                continue
            from lrfind.errors import ConfigError

            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"cannot open study storage {masked_url(url)}: {masked_text(reason, url)}; "
                              "check --storage (and that the database server runs)") from None


def masked_text(text: str, url: str) -> str:
    """Remove the URL's password from an error message that might quote it."""
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # noqa: BLE001
        password = None
    return text.replace(str(password), "***") if password else text
