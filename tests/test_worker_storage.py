"""A study worker's storage (lrfind.study.worker_storage), on SQLite, in this process:
transient errors retried, a persistent one one line (exit 2 at the CLI), dead workers' trials
failed with a reason naming the worker and its last heartbeat, and the end counted once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from lrfind.study.storage import WORKER_ATTR, open_storage, process_start_time, worker_identity
from lrfind.study.worker_storage import (FAIL_REASON_ATTR, StorageUnavailable, WorkerStorage, classify,
                                         fail_dead_trials)

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")


def _storage(path, **kwargs) -> WorkerStorage:
    # a 50 ms busy timeout: SQLite's own wait (5 s by default) would hide the lock from the retries
    return WorkerStorage(f"sqlite:///{path}", heartbeat_interval=1, grace_period=2,
                         engine_kwargs={"connect_args": {"timeout": 0.05}}, **kwargs)


def _study(storage, name="s"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=storage, load_if_exists=True)


def _hold_lock(path, seconds: float) -> threading.Thread:
    """Another process's write transaction on the database, for `seconds`."""
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")

    def release():
        time.sleep(seconds)
        conn.rollback()
        conn.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_errors_are_told_transient_or_permanent():
    locked = sqlalchemy.exc.OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))
    reset = optuna.exceptions.StorageInternalError("commit failed")
    reset.__cause__ = sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed the connection "
                                                                             "unexpectedly"))
    no_table = sqlalchemy.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: trials"))
    clash = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint"))
    assert classify(locked, "get_trial") == classify(reset, "create_new_trial") == "transient"
    assert classify(no_table, "get_trial") == "permanent"
    assert classify(clash, "set_study_user_attr") == "transient"  # two workers inserting one attribute
    assert classify(clash, "create_new_trial") is None  # not ours to retry: optuna's own error handling
    assert classify(ValueError("Cannot tell a FAIL trial."), "set_trial_state_values") is None


def test_a_locked_database_is_waited_out(tmp_path):
    path = tmp_path / "s.db"
    storage = _storage(path)
    study = _study(storage)
    holder = _hold_lock(path, 0.8)
    study.set_user_attr("written", "through the lock")  # fails with "database is locked" first, then retries
    holder.join()
    assert optuna.load_study(study_name="s", storage=f"sqlite:///{path}").user_attrs["written"] == "through the lock"
    assert storage.storage_seconds >= 0.7


def test_a_lock_that_persists_stops_the_worker_with_one_line(tmp_path):
    path = tmp_path / "s.db"
    storage = _storage(path)
    study = _study(storage)
    storage.retry_seconds = 0.6
    holder = _hold_lock(path, 2.0)
    try:
        with pytest.raises(StorageUnavailable) as caught:
            study.set_user_attr("k", 1)
        message = str(caught.value)
        assert "\n" not in message and "kept failing" in message and "database is locked" in message
        assert "set_study_user_attr" in message and str(path) in message
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):  # every later call fails at once: the worker stops
            storage.get_all_studies()
        assert time.monotonic() - started < 0.1
    finally:
        holder.join()


def test_the_password_of_a_storage_that_gives_up_is_masked(monkeypatch):
    from lrfind.secrets import mask_url

    storage = WorkerStorage.__new__(WorkerStorage)  # its message only; no server to open
    storage.url = "postgresql+psycopg2://me:s3cret-pw@db.local/studies"
    storage._shown_url = mask_url(storage.url)
    err = sqlalchemy.exc.OperationalError("SELECT", {}, Exception('could not connect: password "s3cret-pw" ...'))
    message = str(storage._unavailable("get_trial", err, 61.0, "transient"))
    assert "s3cret-pw" not in message and "db.local" in message and "***" in message


def test_two_workers_setting_one_new_attribute_at_once_both_succeed(tmp_path, monkeypatch):
    """The insert race (a unique-key clash on the first insert of a study attribute) is retried."""
    from optuna.storages import RDBStorage

    storage = _storage(tmp_path / "s.db")
    study = _study(storage)
    real, clashes = RDBStorage.set_study_user_attr, []

    def clash_once(self, study_id, key, value):
        if not clashes:
            clashes.append(key)
            real(self, study_id, key, "the other worker's value")  # the other worker's insert won
            raise sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
        return real(self, study_id, key, value)

    monkeypatch.setattr(RDBStorage, "set_study_user_attr", clash_once)
    study.set_user_attr("recommendation", {"trial_number": 3})
    assert clashes == ["recommendation"] and study.user_attrs["recommendation"] == {"trial_number": 3}


def _running_trial(study, worker: dict):
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, worker)
    trial.set_user_attr("steps_done", 5)
    study._storage.record_heartbeat(trial._trial_id)
    return trial


def test_a_trial_whose_heartbeat_stopped_fails_with_the_worker_and_the_time(tmp_path):
    path = tmp_path / "s.db"
    study = _study(_storage(path))
    trial = _running_trial(study, {"host": "render-07", "pid": 4242, "started": 1.0})
    alive = _running_trial(study, {"host": "render-08", "pid": 99, "started": 1.0})
    with sqlite3.connect(path) as conn:  # render-07 stopped beating a minute ago
        conn.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-60 seconds') WHERE trial_id = ?",
                     (trial._trial_id,))
    assert fail_dead_trials(study) == [trial.number]
    failed, retry = study.trials[trial.number], study.trials[-1]
    reason = failed.user_attrs[FAIL_REASON_ATTR]
    assert failed.state == TrialState.FAIL and "render-07 pid 4242" in reason
    assert "stopped sending heartbeats" in reason and "last heartbeat was at" in reason and "heartbeat check" in reason
    assert f"{worker_identity()['host']} pid {worker_identity()['pid']}" in reason  # who found it
    assert study.trials[alive.number].state == TrialState.RUNNING  # beating: left alone
    # the retry is a new attempt: the dead one's reason, worker and progress are not copied onto it
    assert retry.state == TrialState.WAITING and retry.params == failed.params
    assert retry.user_attrs["retry_of"] == trial.number
    assert not {FAIL_REASON_ATTR, WORKER_ATTR, "steps_done"} & set(retry.user_attrs)
    assert fail_dead_trials(study) == []  # once


def test_a_trial_whose_local_worker_died_fails_at_once_with_the_pid(tmp_path):
    study = _study(_storage(tmp_path / "s.db"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    worker = dict(worker_identity(), pid=dead.pid, started=process_start_time(dead.pid) or 1.0)
    trial = _running_trial(study, worker)  # its heartbeat is fresh: only the process check can tell
    assert fail_dead_trials(study) == [trial.number]
    reason = study.trials[trial.number].user_attrs[FAIL_REASON_ATTR]
    assert f"pid {dead.pid} died" in reason and "process check" in reason and "last heartbeat was at" in reason


def test_the_report_lists_a_dead_workers_trial_with_its_reason(tmp_path):
    from lrfind.report.data import load_study_data
    from lrfind.report.sections.trials_table import _get_trials_table_info
    from lrfind.report.sections.warnings import _get_warnings_info

    path = tmp_path / "s.db"
    study = _study(_storage(path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = _running_trial(study, dict(worker_identity(), pid=dead.pid, started=1.0))
    fail_dead_trials(study)
    data = load_study_data("s", f"sqlite:///{path}", tmp_path / "out")
    texts = [w.text for w in _get_warnings_info(data) if w.kind == "failed"]
    assert any(f"trial {trial.number} failed" in t and f"pid {dead.pid} died" in t for t in texts), texts
    table = _get_trials_table_info(data)
    assert f"pid {dead.pid} died" in table.set_index("number").loc[trial.number, "fail_reason"]


def test_open_storage_gives_a_worker_storage_when_asked(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", 1, 2, storage_class=WorkerStorage)
    assert isinstance(storage, WorkerStorage)
    assert type(storage.get_heartbeat_stale_trial_callback()).__name__ == "RetryDeadWorkerTrial"


# --- the end of a study, and surviving other workers ---------------------------------------------


def _objective(trial):
    return trial.suggest_float("x", 0, 1)


def test_a_trial_started_once_the_count_is_reached_is_not_run(tmp_path):
    from lrfind.study.objective import TrialFailed
    from lrfind.study.study_end import NOT_RUN_ATTR, EndAwareObjective, counted_trials

    study = _study(_storage(tmp_path / "s.db"))
    study.optimize(EndAwareObjective(_objective, 2), n_trials=3, catch=(TrialFailed,))  # n_trials 3: one too many
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    late = study.trials[2]
    assert late.user_attrs[NOT_RUN_ATTR] and late.user_attrs[FAIL_REASON_ATTR].startswith("not run")
    assert [t.number for t in counted_trials(study.trials)] == [0, 1]


def test_a_worker_whose_trial_another_worker_failed_goes_on(tmp_path):
    from lrfind.study.objective import TrialFailed
    from lrfind.study.study_end import EndAwareObjective, optimize_surviving

    study = _study(_storage(tmp_path / "s.db"))

    def taken_for_dead_once(trial):
        if trial.number == 1:  # another worker's heartbeat check fails this running trial
            study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, "heartbeat stopped")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return _objective(trial)

    taken = optimize_surviving(study, EndAwareObjective(taken_for_dead_once, 3), 3, None, catch=(TrialFailed,),
                               callbacks=[lambda s, t: s.stop() if len(s.get_trials(
                                   states=(TrialState.COMPLETE,))) >= 3 else None])
    assert taken == [1]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                               TrialState.COMPLETE]


def test_a_storage_that_gave_up_inside_optimize_surfaces_as_its_one_line(tmp_path, monkeypatch):
    from optuna.storages import RDBStorage

    from lrfind.study.objective import TrialFailed
    from lrfind.study.study_end import EndAwareObjective, optimize_surviving

    storage = _storage(tmp_path / "s.db")
    storage.retry_seconds = 0.3
    study = _study(storage)
    lost = sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("server closed the connection unexpectedly"))

    def report_then_lose_the_database(trial):
        monkeypatch.setattr(RDBStorage, "set_trial_intermediate_value", lambda *a, **k: (_ for _ in ()).throw(lost))
        trial.report(0.5, 1)
        return 0.5

    with pytest.raises(StorageUnavailable, match="server closed the connection"):
        optimize_surviving(study, EndAwareObjective(report_then_lose_the_database, 3), 3, None, catch=(TrialFailed,))


def test_settle_end_fails_dead_trials_and_leftover_retries(tmp_path):
    from lrfind.study.study_end import NOT_RUN_ATTR, settle_end

    study = _study(_storage(tmp_path / "s.db"))
    study.optimize(_objective, n_trials=2)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    running = _running_trial(study, dict(worker_identity(), pid=dead.pid, started=1.0))
    waited = []
    assert settle_end(study, 2, grace_period=2, on_wait=waited.append) == []
    assert waited == []  # the dead worker's trial was failed before any wait
    trials = study.trials
    assert trials[running.number].state == TrialState.FAIL
    retry = trials[-1]  # the retry the dead trial got: nobody will run it now
    assert retry.state == TrialState.FAIL and retry.user_attrs[NOT_RUN_ATTR]
    assert retry.user_attrs[FAIL_REASON_ATTR].startswith("not retried")
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_the_overrun_note_counts_trials_finished_after_the_last_needed():
    from datetime import datetime, timedelta

    from optuna.distributions import FloatDistribution
    from optuna.trial import FrozenTrial

    from lrfind.study.study_end import overrun_note

    t0 = datetime(2026, 12, 1, 22, 0)

    def finished(number, minute, state=TrialState.COMPLETE):
        return FrozenTrial(number=number, state=state, value=0.5 if state == TrialState.COMPLETE else None,
                           values=None, datetime_start=t0, datetime_complete=t0 + timedelta(minutes=minute),
                           params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, user_attrs={},
                           system_attrs={}, intermediate_values={}, trial_id=number + 1)

    trials = [finished(0, 1), finished(1, 3), finished(2, 2, TrialState.PRUNED), finished(3, 5),
              finished(4, 4, TrialState.FAIL)]
    note = overrun_note(trials, 3, [])
    assert note.startswith("4 trials finished for --n-trials 3: 1 more (trial(s) 3)")
    assert "(trial 1)" in note  # the third to finish, by completion time, not by number
    assert overrun_note(trials, 4, []) == ""
    assert "Trial(s) 7 still running" in overrun_note(trials, 4, [7])


def test_a_database_lost_mid_study_ends_the_worker_with_exit_2_and_one_line(example_dataset, tmp_path, monkeypatch,
                                                                           capsys):
    """The database goes away mid-trial: one line, exit 2, no traceback; a rerun fails that trial
    with a reason once its worker is gone, and finishes the study."""
    import json

    from optuna.storages import RDBStorage

    from lrfind.cli import main
    from report_study import probe_report

    out = tmp_path / "lost"
    out.mkdir()
    (out / "probe.json").write_text(json.dumps(probe_report()))
    args = ["study", str(example_dataset), "--name", "lost", "--out", str(out), "--space", "tiny", "--trial-budget",
            "8", "--n-trials", "2", "--score", "loss", "--pruner", "median", "--no-progress"]
    lost = sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("server closed the connection unexpectedly"))
    monkeypatch.setattr(WorkerStorage, "retry_seconds", 0.3)
    with monkeypatch.context() as patch:
        patch.setattr(RDBStorage, "set_trial_intermediate_value", lambda *a, **k: (_ for _ in ()).throw(lost))
        rc = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "kept failing" in lines[0] and "server closed the connection" in lines[0]
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    study = optuna.load_study(study_name="lost", storage=url)
    [orphan] = study.get_trials(states=(TrialState.RUNNING,))  # consistent: one trial, left as a killed worker leaves it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # this test process stands for the lost worker: make its record name a gone process
    study._storage.set_trial_user_attr(orphan._trial_id, WORKER_ATTR, dict(worker_identity(), pid=dead.pid))
    assert main(args) == 0
    trials = optuna.load_study(study_name="lost", storage=url).trials
    assert f"pid {dead.pid} died" in trials[orphan.number].user_attrs[FAIL_REASON_ATTR]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
