"""`lrfind study --workers 2` (issue 18 part 2): two local worker processes on the default storage
(a journal file), a worker killed mid-trial and its trial retried; the default storage choice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lrfind.cli import main
from lrfind.study.config import StudyConfig
from lrfind.study.journal import open_journal
from lrfind.study.storage import WORKER_ATTR
from lrfind.study.workers import cpu_threads_per_worker


@pytest.fixture(scope="module")
def probe_report(example_dataset, tmp_path_factory, tiny, feature_store):
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.probe import run_probe

    out = tmp_path_factory.mktemp("probe")
    run_probe(ProbeConfig(dataset={"train_dir": example_dataset, "resolution": 64, "batch_size": 1}, steps=40, out=out,
                          progress=False),
              components=tiny, store=feature_store)
    return out / "probe.json"


def _first_running_trial(journal, launcher, deadline_s=240.0):
    """(number, worker pid) of the first RUNNING trial seen that has started training."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and launcher.poll() is None:
        if journal.is_file():
            try:
                study = optuna.load_study(study_name="w", storage=open_journal(journal))
            except KeyError:  # the study is not created yet
                study = None
            for trial in study.get_trials(states=(TrialState.RUNNING,)) if study else ():
                worker = trial.user_attrs.get(WORKER_ATTR)
                if worker and "train_values" in trial.user_attrs:
                    return trial.number, int(worker["pid"])
        time.sleep(0.1)
    raise AssertionError("no running trial seen")


def test_two_workers_finish_a_study_and_a_killed_workers_trial_is_retried(example_dataset, tmp_path, probe_report,
                                                                          capsys):
    out = tmp_path / "studies" / "w"
    out.mkdir(parents=True)
    shutil.copy(probe_report, out / "probe.json")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "lrfind", "study", str(example_dataset), "--name", "w", "--space", "tiny",
         "--out", str(out), "--n-trials", "4", "--trial-budget", "30", "--score", "loss", "--no-progress",
         "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = tmp_path / "studies" / "w.journal"
    killed, pid = _first_running_trial(journal, launcher)
    assert main(["status", "w", "--study-dir", str(out)]) == 0  # from the storage, beside the running study
    status = capsys.readouterr().out
    assert status.startswith("study w: ") and "finished" in status and f"trial {killed}: " in status
    worker_env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    assert worker_env["OMP_NUM_THREADS"] == str(cpu_threads_per_worker(2, os.environ, len(os.sched_getaffinity(0))))
    os.kill(pid, signal.SIGKILL)
    output, _ = launcher.communicate(timeout=300)  # a safety net; the study takes ~30 s on 2 cores
    assert launcher.returncode == 0, output
    assert not (tmp_path / "studies" / "w.db").exists()  # several workers: the journal, not sqlite
    trials = optuna.load_study(study_name="w", storage=open_journal(journal)).get_trials()
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # each recorded once
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= 4
    assert trials[killed].state == TrialState.FAIL and "died" in trials[killed].user_attrs["fail_reason"]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert retried and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert len({t.user_attrs[WORKER_ATTR]["pid"] for t in finished}) >= 2  # both workers ran trials
    assert "2 workers done" in output and output.count("Recommended") == 1


@pytest.mark.parametrize("workers, omp, cores, expected", [
    (2, "2", 2, 1),   # CI: OMP_NUM_THREADS=2 on two cores -> one thread each, not 2 x 2 spinning on 2 cores
    (2, None, 16, 8),  # unset: the cores shared out
    (3, None, 16, 5),
    (4, "2", 16, 1),   # never below one
    (1, "6", 16, 6),   # one worker keeps what the user set
    (2, "junk", 4, 2),  # unreadable: as if unset
])
def test_cpu_threads_are_shared_out_between_workers(workers, omp, cores, expected):
    environ = {} if omp is None else {"OMP_NUM_THREADS": omp}
    assert cpu_threads_per_worker(workers, environ, cores) == expected


def test_default_storage_is_a_journal_for_several_workers_and_sqlite_for_one(tmp_path):
    base = dict(dataset={"train_dir": tmp_path}, name="s", out=tmp_path / "studies" / "s")
    assert StudyConfig(**base).storage_url().startswith("sqlite:///")
    assert StudyConfig(**base, workers=2).storage_url() == f"journal:///{tmp_path}/studies/s.journal"
    assert StudyConfig(**base, devices="0,1").worker_count == 2
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "s.journal").touch()  # resumed with one worker: the journal it ran in
    assert StudyConfig(**base).storage_url().startswith("journal:///")
    assert StudyConfig(**base, storage="sqlite:///x.db").storage_url() == "sqlite:///x.db"
    with pytest.raises(ValueError, match="one worker runs per device"):
        StudyConfig(**base, workers=3, devices="0,1")


def test_ctrl_c_stops_every_worker_and_leaves_no_running_trial(example_dataset, tmp_path, probe_report):
    """SIGINT to the launcher (what Ctrl-C sends its process group): every worker stops, each marks
    its running trial failed, the launcher exits 130 with one line, and a rerun could resume."""
    out = tmp_path / "studies" / "w"
    out.mkdir(parents=True)
    shutil.copy(probe_report, out / "probe.json")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "lrfind", "study", str(example_dataset), "--name", "w", "--space", "tiny",
         "--out", str(out), "--n-trials", "40", "--trial-budget", "60", "--score", "loss", "--no-progress",
         "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # the launcher must not inherit an ignored SIGINT (as a shell's background job would)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    journal = tmp_path / "studies" / "w.journal"
    _, pid = _first_running_trial(journal, launcher)
    launcher.send_signal(signal.SIGINT)
    output, _ = launcher.communicate(timeout=120)
    assert launcher.returncode == 130, output
    assert "Traceback" not in output, output
    with pytest.raises(ProcessLookupError):  # the worker that was training is gone too
        os.kill(pid, 0)
    trials = optuna.load_study(study_name="w", storage=open_journal(journal)).get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) < 40
