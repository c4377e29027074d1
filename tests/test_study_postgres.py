"""`lrfind study` on a real PostgreSQL server: two workers on one study, every trial recorded once.

The fixture starts a throwaway server on 127.0.0.1 (Debian's PostgreSQL: `initdb`/`postgres` on
PATH or under /usr/lib/postgresql/*/bin), with scram-sha-256 and a password, and stops it by its
PID. initdb refuses to run as root, so as root the server runs as the `postgres` user in a folder
that user owns. Without the binaries the tests skip, except under CI (CI set), where they fail:
`.ci/run` installs them (scripts/install_test_services.sh).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from report_study import probe_report

N_TRIALS = 4


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _missing(reason: str):
    """Skip locally; under CI a missing service is a failure, never a silent skip."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (CI is set: run `bash scripts/install_test_services.sh`)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user() -> dict:
    """Popen arguments that run a command as `postgres` when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres"}


def _connect(url_parts: dict, dbname: str):
    import psycopg2

    return psycopg2.connect(host="127.0.0.1", port=url_parts["port"], user=url_parts["user"],
                            password=url_parts["password"], dbname=dbname, connect_timeout=2)


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql://lrfind:PASSWORD@127.0.0.1:PORT/lrfind on a fresh server; stopped afterwards."""
    initdb, postgres = _pg_binary("initdb"), _pg_binary("postgres")
    if not (initdb and postgres):
        _missing("PostgreSQL server binaries (initdb, postgres) not found: apt-get install -y postgresql")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _missing("the psycopg2 driver is missing: pip install psycopg2-binary (in the test extra)")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root but there is no `postgres` user to run the server as")
    parts = {"user": "lrfind", "password": "pw-" + secrets.token_hex(12), "port": _free_port()}
    root = Path(tempfile.mkdtemp(prefix="lrfind-pg-"))  # in /tmp: reachable by the postgres user
    data, pwfile = root / "data", root / "pwfile"
    pwfile.write_text(parts["password"] + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    server = None
    try:
        subprocess.run([initdb, "-D", str(data), "-U", parts["user"], "--auth=scram-sha-256",
                        f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120, **_as_server_user())
        log = open(root / "server.log", "wb")
        server = subprocess.Popen([postgres, "-D", str(data), "-p", str(parts["port"]),
                                   "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
                                   "-c", "fsync=off", "-c", "max_connections=50"],
                                  stdout=log, stderr=subprocess.STDOUT, **_as_server_user())
        _wait_until_up(server, parts, root)
        conn = _connect(parts, "postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE lrfind")
        conn.close()
        yield dict(parts, url=f"postgresql://{parts['user']}:{parts['password']}@127.0.0.1:{parts['port']}/lrfind")
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # fast shutdown: ends sessions, then exits
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_up(server, parts: dict, root: Path, timeout: float = 30.0) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited with {server.returncode}: {(root / 'server.log').read_text()[-2000:]}")
        try:
            _connect(parts, "postgres").close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _worker(dataset: Path, out: Path, url: str, name: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "lrfind", "study", str(dataset), "--name", name, "--storage", url,
           "--space", "tiny", "--trial-budget", "12", "--n-trials", str(N_TRIALS), "--score", "loss",
           "--pruner", "median", "--out", str(out), "--no-progress", "--heartbeat-interval", "2",
           "--grace-period", "30"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def two_worker_study(postgres_url, example_dataset, tmp_path_factory):
    """Two `lrfind study` processes started together on one PostgreSQL study; run once per module."""
    out = tmp_path_factory.mktemp("pg-study") / "pg"
    out.mkdir()
    (out / "probe.json").write_text(json.dumps(probe_report()))  # neither worker probes
    workers = [_worker(example_dataset, out, postgres_url["url"], "pg") for _ in range(2)]
    outputs = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=600)
            outputs.append((worker.returncode, stdout, stderr))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return {"out": out, "outputs": outputs, "pids": {w.pid for w in workers}, "url": postgres_url}


def _trials(two_worker_study):
    import optuna

    from lrfind.study.storage import engine_url

    study = optuna.load_study(study_name="pg", storage=engine_url(two_worker_study["url"]["url"]))
    return study.get_trials(deepcopy=False)


def test_two_workers_share_one_postgres_study(two_worker_study):
    from optuna.trial import TrialState

    password, out = two_worker_study["url"]["password"], two_worker_study["out"]
    for rc, stdout, stderr in two_worker_study["outputs"]:
        assert rc == 0, f"worker failed ({rc}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
        assert password not in stdout + stderr
        assert "***" in stdout  # the storage URL it printed, masked
    trials = _trials(two_worker_study)
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # every number once, none missing
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= N_TRIALS
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert {t.user_attrs["lrfind_worker"]["pid"] for t in trials if "lrfind_worker" in t.user_attrs} <= two_worker_study["pids"]
    for t in trials:  # each trial's folder is its own: no worker wrote over another's
        if t.state == TrialState.COMPLETE:
            assert (out / "trials" / str(t.number) / "metrics.json").is_file()
    conn = _connect(two_worker_study["url"], "lrfind")
    try:
        with conn.cursor() as cur:  # straight from the database, not through optuna's cache
            cur.execute("SELECT number, count(*) FROM trials GROUP BY number HAVING count(*) > 1")
            assert cur.fetchall() == []
    finally:
        conn.close()
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["trial_number"] in [t.number for t in trials if t.state == TrialState.COMPLETE]


def test_two_workers_do_not_repeat_each_others_parameters(two_worker_study):
    """Workers with equal sampler seeds once drew the same sequence of points. With seeds mixed with
    the process id they draw their own; on the tiny space two independent draws may still meet by
    chance (a completed point is then reused as a twin, not retrained), so the check is on the
    sequences, not on every point being new."""
    by_worker: dict = {}
    for t in sorted(_trials(two_worker_study), key=lambda t: t.number):
        pid = t.user_attrs.get("lrfind_worker", {}).get("pid")
        if t.params and pid is not None and "duplicate_of" not in t.user_attrs:
            by_worker.setdefault(pid, []).append(tuple(sorted(t.params.items())))
    assert len(by_worker) == 2, by_worker
    first, second = by_worker.values()
    n = min(len(first), len(second))
    assert n >= 1 and first[:n] != second[:n]


def test_unreachable_or_wrong_postgres_is_one_masked_line(postgres_url, example_dataset, tmp_path, capsys):
    from lrfind.cli import main

    wrong_password = postgres_url["url"].replace(postgres_url["password"], "not-" + postgres_url["password"])
    closed_port = f"postgresql://lrfind:s3cret-pw@127.0.0.1:{_free_port()}/lrfind"
    for url, secret in ((closed_port, "s3cret-pw"), (wrong_password, "not-" + postgres_url["password"])):
        out = tmp_path / "bad"
        rc = main(["study", str(example_dataset), "--name", "bad", "--storage", url, "--space", "tiny",
                   "--out", str(out), "--no-progress", "--score", "loss"])
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert rc == 2
        assert len(lines) == 1 and "cannot open study storage" in lines[0] and "***" in lines[0], captured.err
        assert secret not in captured.err + captured.out
        assert not out.exists()  # nothing written for a study that never opened


def test_a_storage_password_shows_nowhere(postgres_url, example_dataset, tmp_path, capsys, caplog):
    """The issue's form (`?user=u&password=PW`) with a password full of URL characters: not in the
    output, the log, any file of the study folder, or the report."""
    import logging
    from urllib.parse import quote

    from lrfind.cli import main

    unique = secrets.token_hex(8)
    password = f"Ab@c:d/e?f-{unique}"
    conn = _connect(postgres_url, "postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE leaky LOGIN PASSWORD '{password}'")
        cur.execute("CREATE DATABASE leakydb OWNER leaky")
    conn.close()
    url = (f"postgresql://127.0.0.1:{postgres_url['port']}/leakydb?user=leaky"
           f"&password={quote(password, safe='')}")
    out = tmp_path / "leak"
    out.mkdir()
    (out / "probe.json").write_text(json.dumps(probe_report()))
    with caplog.at_level(logging.INFO):
        assert main(["study", str(example_dataset), "--name", "leak", "--storage", url, "--space", "tiny",
                     "--trial-budget", "12", "--n-trials", "1", "--score", "loss", "--out", str(out),
                     "--no-progress"]) == 0
        report = tmp_path / "leak.html"
        assert main(["report", "leak", "--storage", url, "--study-dir", str(out), "--out", str(report)]) == 0
    captured = capsys.readouterr()
    shown = captured.out + captured.err + caplog.text
    assert "password=***" in captured.out and "password=***" in report.read_text(encoding="utf-8")
    written = [p for p in out.rglob("*") if p.is_file()] + [report]
    assert len(written) > 3
    for text in [shown] + [p.read_bytes().decode("latin-1") for p in written]:
        assert unique not in text and quote(password, safe="") not in text
