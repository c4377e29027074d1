"""Four `lrfind study` workers on one PostgreSQL study, one killed with SIGKILL mid-trial; three
times, so that a one-in-five failure shows.

After each run: every trial number once, none RUNNING or WAITING, a reason on every FAIL (the
killed worker's names its pid), every surviving worker exits 0, the study ended once (--n-trials
plus at most the trials other workers were running then), and every survivor printed the same
recommendation as recommendation.json holds. The server is test_study_postgres's throwaway one
(skipped without PostgreSQL, failed under CI); the workers are `python -m lrfind` subprocesses with
PYTHONPATH at this checkout, as from a clean clone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from report_study import probe_report
from test_study_postgres import _connect, postgres_url  # noqa: F401 - postgres_url is the server fixture

REPO = Path(__file__).resolve().parents[1]
N_WORKERS, N_TRIALS = 4, 8
HEARTBEAT, GRACE = 1, 5


def _worker(dataset: Path, out: Path, url: str, name: str) -> subprocess.Popen:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=path)
    cmd = [sys.executable, "-m", "lrfind", "study", str(dataset), "--name", name, "--storage", url,
           "--space", "tiny", "--trial-budget", "8", "--n-trials", str(N_TRIALS), "--score", "loss",
           "--pruner", "median", "--out", str(out), "--no-progress", "--heartbeat-interval", str(HEARTBEAT),
           "--grace-period", str(GRACE)]
    return subprocess.Popen(cmd, env=env, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _running_trial_of(pg: dict, name: str, pid: int):
    """The number of a RUNNING trial of `name` that worker `pid` runs, straight from the database."""
    import psycopg2

    conn = _connect(pg, "lrfind")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('trial_user_attributes')")
            if cur.fetchone()[0] is None:
                return None  # no worker has created Optuna's tables yet
            cur.execute("SELECT t.number, a.value_json FROM trials t JOIN studies s ON s.study_id = t.study_id "
                        "JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                        "WHERE s.study_name = %s AND t.state = 'RUNNING' AND a.key = 'lrfind_worker'", (name,))
            rows = cur.fetchall()
    except psycopg2.errors.UndefinedTable:  # created between the two statements
        return None
    finally:
        conn.close()
    return next((number for number, worker in rows if json.loads(worker).get("pid") == pid), None)


def _kill_mid_trial(pg: dict, name: str, victim: subprocess.Popen, timeout: float = 240.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if victim.poll() is not None:
            pytest.fail(f"the worker to kill exited first ({victim.returncode}): {victim.communicate()}")
        number = _running_trial_of(pg, name, victim.pid)
        if number is not None:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            return number
        time.sleep(0.1)
    pytest.fail("the worker to kill never ran a trial")


def _summary(stdout: str) -> str:
    """The recommendation block a worker printed last: "Recommended ..." up to "wrote ..."."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("Recommended"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("wrote "))
    return "\n".join(lines[start:end + 1])


@pytest.fixture(scope="module", params=range(3), ids=lambda run: f"run{run}")
def killed_study(request, postgres_url, example_dataset, tmp_path_factory):  # noqa: F811
    run, name = request.param, f"load{request.param}"
    out = tmp_path_factory.mktemp(name)
    (out / "probe.json").write_text(json.dumps(probe_report()))  # no worker probes
    workers = [_worker(example_dataset, out, postgres_url["url"], name) for _ in range(N_WORKERS)]
    victim = workers[run % N_WORKERS]
    outputs = {}
    try:
        killed_trial = _kill_mid_trial(postgres_url, name, victim)
        for worker in workers:
            if worker is not victim:
                stdout, stderr = worker.communicate(timeout=300)
                outputs[worker.pid] = (worker.returncode, stdout, stderr)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return {"name": name, "out": out, "pg": postgres_url, "victim": victim, "killed_trial": killed_trial,
            "outputs": outputs}


def _study(killed_study):
    import optuna

    from lrfind.study.storage import engine_url

    return optuna.load_study(study_name=killed_study["name"], storage=engine_url(killed_study["pg"]["url"]))


def test_survivors_exit_0_and_every_trial_is_accounted_for(killed_study):
    from optuna.trial import TrialState

    victim, password = killed_study["victim"], killed_study["pg"]["password"]
    assert victim.returncode == -signal.SIGKILL
    for pid, (rc, stdout, stderr) in killed_study["outputs"].items():
        assert rc == 0, f"worker {pid} exited {rc}:\n{stdout[-3000:]}\n{stderr[-3000:]}"
        assert password not in stdout + stderr and "Traceback" not in stderr, stderr[-3000:]
    trials = _study(killed_study).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get("fail_reason") for t in failed), [(t.number, t.user_attrs) for t in failed]
    killed = trials[killed_study["killed_trial"]]
    assert killed.state == TrialState.FAIL
    assert f"pid {victim.pid}" in killed.user_attrs["fail_reason"]
    assert "last heartbeat was at" in killed.user_attrs["fail_reason"]
    conn = _connect(killed_study["pg"], "lrfind")
    try:
        with conn.cursor() as cur:  # straight from the database: no number twice
            cur.execute("SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id "
                        "WHERE s.study_name = %s GROUP BY t.number HAVING count(*) > 1", (killed_study["name"],))
            assert cur.fetchall() == []
    finally:
        conn.close()


def test_the_study_ends_once_and_every_survivor_recommends_the_same(killed_study):
    from optuna.trial import TrialState

    trials = _study(killed_study).get_trials(deepcopy=False)
    finished = sorted((t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)),
                      key=lambda t: t.datetime_complete)
    survivors = len(killed_study["outputs"])
    # the one that finished the last needed trial runs no other: at most the other survivors ran over
    assert N_TRIALS <= len(finished) <= N_TRIALS + survivors - 1
    last_needed = finished[N_TRIALS - 1].datetime_complete
    for late in finished[N_TRIALS:]:  # each was running when the last needed trial finished (clock
        # stamps are taken just before each commit: a second of slack, far less than a trial)
        assert late.datetime_start < last_needed + timedelta(seconds=1), (late.number, late.datetime_start)
    summaries = {_summary(stdout) for _, stdout, _ in killed_study["outputs"].values()}
    assert len(summaries) == 1, summaries
    [summary] = summaries
    rec = json.loads((killed_study["out"] / "recommendation.json").read_text())
    assert rec["summary"] in summary and f"from trial {rec['trial_number']}," in summary
    assert _study(killed_study).user_attrs["recommendation"]["trial_number"] == rec["trial_number"]
    if len(finished) > N_TRIALS:
        assert f"{len(finished)} trials finished for --n-trials {N_TRIALS}" in summary


def test_the_report_shows_why_the_killed_workers_trial_failed(killed_study):
    from lrfind.report.data import load_study_data
    from lrfind.report.sections.warnings import _get_warnings_info

    data = load_study_data(killed_study["name"], killed_study["pg"]["url"], killed_study["out"])
    texts = [w.text for w in _get_warnings_info(data) if w.kind == "failed"]
    number, pid = killed_study["killed_trial"], killed_study["victim"].pid
    assert any(t.startswith(f"trial {number} failed: worker ") and f"pid {pid}" in t for t in texts), texts
