"""A throwaway PostgreSQL server on 127.0.0.1 for benchmarks (as tests/test_study_postgres.py's
fixture starts one): Debian's initdb/postgres, scram-sha-256 with a random password, run as the
`postgres` user when we are root (initdb refuses root), stopped by its PID."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)
    if not found:
        raise SystemExit(f"{name} not found: apt-get install -y postgresql (or bash scripts/install_test_services.sh)")
    return found


def _as_server_user() -> dict:
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def throwaway_postgres(max_connections: int = 100):
    """Yields postgresql://lrfind:PASSWORD@127.0.0.1:PORT/lrfind; the server is stopped afterwards."""
    import psycopg2

    password, port = "pw-" + secrets.token_hex(12), _free_port()
    root = Path(tempfile.mkdtemp(prefix="lrfind-bench-pg-"))
    (root / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "pwfile", "postgres", "postgres")
    server = None
    try:
        subprocess.run([_binary("initdb"), "-D", str(root / "data"), "-U", "lrfind", "--auth=scram-sha-256",
                        f"--pwfile={root / 'pwfile'}", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120, **_as_server_user())
        server = subprocess.Popen([_binary("postgres"), "-D", str(root / "data"), "-p", str(port),
                                   "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
                                   "-c", f"max_connections={max_connections}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_as_server_user())
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="lrfind", password=password,
                                        dbname="postgres", connect_timeout=2)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE lrfind")
        conn.close()
        yield f"postgresql://lrfind:{password}@127.0.0.1:{port}/lrfind"
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)
