"""The RDB storage a study worker uses: storage calls retried through transient errors, and a
reason on every trial whose worker died.

Many workers on one database meet errors that pass: a connection reset, a PostgreSQL
serialisation failure or deadlock, a lock timeout, SQLite's "database is locked", and two workers
inserting the same study attribute at once (a unique-key clash that a second try turns into an
update). Each storage call is retried with exponential backoff for up to RETRY_SECONDS; an error
that persists, or one known to be permanent, becomes StorageUnavailable (one line, exit 2 at the
CLI), and every later call of this process fails fast with it, so the worker stops at once.

A trial whose worker died is failed by whichever live worker notices first: Optuna's heartbeat
check (a RUNNING trial whose heartbeat is older than the grace period, any machine), this
machine's process check (the trial's recorded worker pid no longer exists here), or, for a trial
created but never run (no heartbeat at all), its age. Before the trial is failed, its
"fail_reason" user attribute, the one every other failure uses, says which worker, when its
heartbeat stopped and who found it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import datetime
from typing import Optional

from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from lrfind.errors import LrfindError
from lrfind.secrets import mask_text, mask_url
from lrfind.study.storage import WORKER_ATTR, recover_dead_local_trials, worker_identity, worker_is_alive

log = logging.getLogger("lrfind.study")

FAIL_REASON_ATTR = "fail_reason"
RETRY_SECONDS = 60.0  # a database restart or failover takes seconds; a minute of failures is an outage
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 5.0
MAX_RETRY = 2  # a dead worker's trial is retried this many times (then its parameters are given up)
ORPHAN_MARGIN_SECONDS = 60  # clocks of different machines may differ: a never-beating trial waits longer
TRANSIENT_MARKERS = ("database is locked", "database table is locked", "could not serialize", "deadlock detected",
                     "lock timeout", "lock not available", "server closed the connection", "connection reset",
                     "connection refused", "terminating connection", "could not connect", "timeout expired",
                     "connection timed out", "ssl syscall", "broken pipe", "the database system is",
                     "connection already closed", "too many clients")
PERMANENT_MARKERS = ("no such table", "no such column", "password authentication failed", "does not exist",
                     "readonly database", "read-only database", "unable to open database file",
                     "permission denied")
# study/trial attributes are inserted when first set: two workers setting one at once clash on the
# unique key; the second try finds the row and updates it
ATTR_SETTERS = ("set_study_user_attr", "set_study_system_attr", "set_trial_user_attr", "set_trial_system_attr")
RETRIED = ("create_new_study", "delete_study", "get_study_id_from_name", "get_study_name_from_id",
           "get_study_directions", "get_study_user_attrs", "get_study_system_attrs", "get_all_studies",
           "create_new_trial", "set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_param",
           "set_trial_state_values", "set_trial_intermediate_value", "get_trial", "get_all_trials",
           "get_trial_user_attrs", "get_trial_system_attrs", "get_best_trial", *ATTR_SETTERS,
           # what optuna's _CachedStorage calls on the storage it wraps
           "_create_new_trial", "_set_trial_param", "_get_trials", "_get_best_trial_id")


class StorageUnavailable(LrfindError):
    """The study's database kept failing (or failed for good): this worker stops; the study is intact."""


def _error_chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _first_line(err: BaseException) -> str:
    """The database's own error (the driver's, under Optuna's and SQLAlchemy's wrappers), one line."""
    import sqlalchemy.exc as sa

    chain = list(_error_chain(err))
    root = next((e.orig for e in chain if isinstance(e, sa.DBAPIError) and e.orig is not None), chain[-1])
    text = str(root).strip().splitlines()
    return f"{type(root).__name__}: {text[0]}" if text else type(root).__name__


def classify(err: BaseException, method: str) -> Optional[str]:
    """"transient", "permanent" (the database is unreachable for good: no retry helps) or None
    (not a database outage: raised as it is)."""
    import sqlalchemy.exc as sa

    chain = list(_error_chain(err))
    text = " ".join(str(e) for e in chain).lower()
    if any(marker in text for marker in PERMANENT_MARKERS):
        return "permanent"
    if any(isinstance(e, sa.IntegrityError) for e in chain):
        return "transient" if method in ATTR_SETTERS else None
    if any(marker in text for marker in TRANSIENT_MARKERS):
        return "transient"
    if any(isinstance(e, (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, sa.DisconnectionError))
           or getattr(e, "connection_invalidated", False) for e in chain):
        return "transient"
    return None  # a bad statement or value (DataError, ProgrammingError) is a bug: raised as it is


def _retried(name: str, inner=None):
    """RDBStorage.<name> (or inner), retried through transient errors (only the outermost call)."""
    def looked_up(self, *args, **kwargs):  # at call time, so RDBStorage's own method is the one run
        return getattr(RDBStorage, name)(self, *args, **kwargs)

    inner = inner or looked_up

    def call(self, *args, **kwargs):
        if self._gave_up is not None:
            raise self._gave_up
        if getattr(self._nesting, "depth", 0):  # a storage method calling another: the outer one retries
            return inner(self, *args, **kwargs)
        self._nesting.depth = 1
        try:
            return self._with_retries(name, inner, args, kwargs)
        finally:
            self._nesting.depth = 0

    call.__name__ = call.__qualname__ = name
    call.__doc__ = getattr(RDBStorage, name, inner).__doc__
    return call


class WorkerStorage(RDBStorage):
    """RDBStorage with retried calls and dead-worker fail reasons (see the module's docstring)."""

    retry_seconds = RETRY_SECONDS

    def __init__(self, url: str, **kwargs):
        import warnings

        from optuna.exceptions import ExperimentalWarning

        kwargs["heartbeat_stale_trial_callback"] = RetryDeadWorkerTrial()
        self._shown_url, self._nesting, self._gave_up = mask_url(url), threading.local(), None
        # the worker's own wait on the database, retries included (benchmarks/study_workers.py)
        self.storage_seconds, self.storage_calls = 0.0, 0
        with warnings.catch_warnings():  # heartbeats are "experimental": not worth a warning on every run
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__(url, **kwargs)  # it already reads the database: the retry state comes first

    def __getstate__(self):
        state = super().__getstate__()
        for key in ("_nesting", "_gave_up"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._nesting, self._gave_up = threading.local(), None

    def _with_retries(self, name: str, inner, args, kwargs):
        from optuna.exceptions import UpdateFinishedTrialError

        started, backoff, attempt = time.monotonic(), FIRST_BACKOFF, 0
        try:
            while True:
                try:
                    return inner(self, *args, **kwargs)
                except UpdateFinishedTrialError:
                    if attempt and name == "set_trial_state_values" and self._already_told(*args, **kwargs):
                        return True  # the failed try had committed; the database holds what we asked
                    raise
                except Exception as err:  # noqa: BLE001 - classify() picks the storage errors out
                    kind = classify(err, name)
                    if kind is None:
                        raise
                    waited = time.monotonic() - started
                    if kind == "permanent" or waited + backoff > self.retry_seconds:
                        self._gave_up = self._unavailable(name, err, waited, kind)
                        raise self._gave_up from None
                    attempt += 1
                    log.info("storage call %s failed (%s); retry %d in %.1f s", name,
                             mask_text(_first_line(err), self.url), attempt, backoff)
                    time.sleep(backoff * random.uniform(0.8, 1.2))  # jitter: workers must not retry in step
                    backoff = min(MAX_BACKOFF, backoff * 2)
        finally:
            if threading.current_thread() is threading.main_thread():  # not the heartbeat thread's beats
                self.storage_seconds += time.monotonic() - started
                self.storage_calls += 1

    def _already_told(self, trial_id, state, values=None) -> bool:
        stored = RDBStorage.get_trial(self, trial_id)
        return stored.state == state and (values is None or list(stored.values or []) == list(values))

    def _unavailable(self, name: str, err: BaseException, waited: float, kind: str) -> StorageUnavailable:
        how = "failed" if kind == "permanent" else f"kept failing for {waited:.1f} s"
        return StorageUnavailable(
            f"study storage {self._shown_url} {how} ({mask_text(_first_line(err), self.url)}) in {name}; "
            "this worker stopped, the study is intact: its running trial is failed with a reason and retried "
            "by another worker or by rerunning the same command once the database is reachable")

    def record_heartbeat(self, trial_id: int) -> None:
        """Beat, in the heartbeat thread: a failure there must not print a thread traceback."""
        try:
            _record_heartbeat(self, trial_id)
        except StorageUnavailable as err:  # the worker's own next storage call stops it with this line
            log.info("heartbeat not recorded: %s", err)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials whose worker is dead, each given its fail_reason before Optuna fails it."""
        from optuna.exceptions import UpdateFinishedTrialError

        annotated = []
        for trial_id, reason in _find_dead_trials_retried(self, study_id).items():
            try:  # the reason first: a finished trial's attributes can no longer be set
                self.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
            except UpdateFinishedTrialError:
                continue  # it finished meanwhile, or another worker failed it first
            annotated.append(trial_id)
        return annotated


def _find_dead_trials(storage: WorkerStorage, study_id: int) -> dict[int, str]:
    """{trial_id: reason} for RUNNING trials of the study whose worker is gone."""
    import sqlalchemy
    import sqlalchemy.orm as orm
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.trial import TrialState

    grace = storage.grace_period if storage.grace_period is not None else 2 * storage.heartbeat_interval
    finder = worker_identity()
    dead = {}
    with _create_scoped_session(storage.scoped_session, True) as session:
        db_now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
        running = (session.query(models.TrialModel)
                   .options(orm.selectinload(models.TrialModel.heartbeats),
                            orm.selectinload(models.TrialModel.user_attributes),
                            orm.selectinload(models.TrialModel.system_attributes))
                   .filter(models.TrialModel.state == TrialState.RUNNING,
                           models.TrialModel.study_id == study_id).all())
        for trial in running:
            attrs = {a.key: a.value_json for a in trial.user_attributes}
            worker = json.loads(attrs[WORKER_ATTR]) if WORKER_ATTR in attrs else None
            beat = trial.heartbeats[0].heartbeat if trial.heartbeats else None
            system = {a.key: a.value_json for a in trial.system_attributes}
            retried = len(json.loads(system.get("retry_history", "[]"))) < MAX_RETRY
            reason = _dead_reason(worker, beat, db_now, grace, finder, trial.datetime_start)
            if reason:
                dead[trial.trial_id] = reason + ("; retried as a new trial" if retried else
                                                 f"; not retried again (failed this way {MAX_RETRY + 1} times)")
    return dead


def _dead_reason(worker: Optional[dict], beat, db_now, grace: int, finder: dict, started) -> Optional[str]:
    """Why this RUNNING trial's worker is taken for dead, or None while it may live."""
    who = f"worker {worker.get('host')} pid {worker.get('pid')}" if worker else "its worker"
    found_by = f"{finder['host']} pid {finder['pid']}"
    last = (f"its last heartbeat was at {beat:%Y-%m-%d %H:%M:%S} (database clock), "
            f"{(db_now - beat).total_seconds():.0f} s before the check") if beat is not None else "it never sent a heartbeat"
    if worker and not worker_is_alive(worker):
        return f"{who} died (its process is gone: killed or crashed); {last}; found by {found_by}'s process check"
    if beat is not None and (db_now - beat).total_seconds() > grace:
        return (f"{who} stopped sending heartbeats (killed, crashed, or cut off from the database); {last}, "
                f"longer than the {grace} s grace period; found by {found_by}'s heartbeat check")
    if beat is None and started is not None:
        age = (datetime.now(started.tzinfo) - started).total_seconds()
        if age > grace + ORPHAN_MARGIN_SECONDS:
            return (f"{who} never ran it: created {age:.0f} s ago and never sent a heartbeat (its worker "
                    f"died as it started it); found by {found_by}'s heartbeat check")
    return None


for _name in RETRIED:
    setattr(WorkerStorage, _name, _retried(_name))
_record_heartbeat = _retried("record_heartbeat")
_find_dead_trials_retried = _retried("_get_stale_trial_ids", _find_dead_trials)


class RetryDeadWorkerTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a stale trial, minus the dead attempt's own records (its fail_reason, worker,
    steps): the retry is a new attempt, and a reason copied onto it would outlive its success."""

    DROPPED = (FAIL_REASON_ATTR, WORKER_ATTR, "steps_done", "train_values", "steps_planned")

    def __init__(self):
        import warnings

        from optuna.exceptions import ExperimentalWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__(max_retry=MAX_RETRY)

    def __call__(self, study, trial) -> None:
        import copy

        retry = copy.deepcopy(trial)
        retry.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in self.DROPPED}
        retry.user_attrs["retry_of"] = trial.number
        super().__call__(study, retry)


def keeps_heartbeats(study) -> bool:
    """RDB storages record heartbeats (and WorkerStorage finds dead workers by them); a journal does not."""
    from optuna.storages._heartbeat import BaseHeartbeat

    return isinstance(study._storage, BaseHeartbeat)


def fail_dead_trials(study) -> list[int]:
    """Fail (with their reasons) and retry the study's trials whose worker died; their numbers.

    Optuna does this before each trial it starts (fail_stale_trials); this is for the times no
    trial starts: when a worker opens the study, and while it waits for the study's last trials.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    if not keeps_heartbeats(study):  # a journal (local workers): the process check alone
        return recover_dead_local_trials(study)
    callback = storage.get_heartbeat_stale_trial_callback()
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(storage.get_trial(trial_id))
        except UpdateFinishedTrialError:
            continue  # another worker failed it first
    for trial in failed:
        if callback is not None:
            callback(study, trial)
    return [t.number for t in failed]

