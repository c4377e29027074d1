"""A study's sqlite file: workers started together on a new file, no empty database left by a
failed study, and the files a run writes readable as the umask says."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from report_study import build_study, probe_report

from lrfind.cli import main

REPO = Path(__file__).resolve().parents[1]
OPEN_TOGETHER = """
import sys, time
from pathlib import Path
import optuna
from lrfind.study.storage import SqliteDatabase, open_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
start, db = float(sys.argv[1]), Path(sys.argv[2])
while time.time() < start:
    time.sleep(0.0005)
with SqliteDatabase(db) as guard:
    storage = open_storage(f"sqlite:///{db}", 30, 120)
    optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
    guard.opened()
"""


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def test_workers_creating_a_new_sqlite_file_at_the_same_moment_all_succeed(tmp_path):
    # Without the lock, 2 processes at one instant failed in 2 of 4 tries with "table studies
    # already exists" or "UNIQUE constraint failed: alembic_version.version_num".
    for attempt in range(2):
        db, start = tmp_path / f"race{attempt}.db", time.time() + 3
        workers = [subprocess.Popen([sys.executable, "-c", OPEN_TOGETHER, str(start), str(db)], env=_env(),
                                    stderr=subprocess.PIPE, text=True) for _ in range(3)]
        for worker in workers:
            _, stderr = worker.communicate(timeout=120)
            assert worker.returncode == 0, stderr[-2000:]


def _study_worker(dataset: Path, out: Path, name: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lrfind", "study", str(dataset), "--name", name, "--space", "tiny",
           "--trial-budget", "8", "--n-trials", "2", "--score", "loss", "--pruner", "none", "--out", str(out),
           "--no-progress"]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_study_processes_of_one_name_on_a_new_sqlite_file_both_finish(example_dataset, tmp_path):
    import optuna
    from optuna.trial import TrialState

    out = tmp_path / "studies" / "pair"
    out.mkdir(parents=True)
    (out / "probe.json").write_text(json.dumps(probe_report()))  # neither worker probes
    workers = [_study_worker(example_dataset, out, "pair") for _ in range(2)]
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=600)
            assert worker.returncode == 0, f"{stdout[-2000:]}\n{stderr[-3000:]}"
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    study = optuna.load_study(study_name="pair", storage=f"sqlite:///{tmp_path / 'studies' / 'pair.db'}")
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) >= 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.FAIL)]


def _failing_study(dataset: Path, *extra: str) -> list[str]:
    # The model is looked at after the study is opened: the database exists by then.
    return ["study", str(dataset), "--name", "bad", "--space", "tiny", "--no-progress", "--model",
            "/nonexistent/model.safetensors", *extra]


def test_a_failed_study_leaves_no_database_beside_its_out_folder(example_dataset, tmp_path, capsys):
    out = tmp_path / "runs" / "bad"
    assert main(_failing_study(example_dataset, "--out", str(out))) == 2
    assert "model" in capsys.readouterr().err
    assert list(tmp_path.rglob("*.db")) == [] and not (tmp_path / "runs" / "bad.db").exists()


def test_a_failed_study_leaves_no_default_database(example_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(_failing_study(example_dataset)) == 2
    assert list(tmp_path.rglob("*.db")) == []


def test_a_failed_study_keeps_a_database_it_did_not_create(example_dataset, tmp_path, capsys):
    url, study_dir = build_study(tmp_path, "bad")
    before = (tmp_path / "bad.db").read_bytes()
    assert main(_failing_study(example_dataset, "--out", str(study_dir))) == 2
    assert (tmp_path / "bad.db").read_bytes() == before


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_run_files_and_state_folders_follow_the_umask(umask, example_dataset, tmp_path, tiny, feature_store):
    from lrfind.training.config import TrainConfig
    from lrfind.training.kohya_names import train_config
    from lrfind.final.run import train_lora

    config = train_config(dict(train_data_dir=example_dataset, resolution=64, max_train_epochs=2, train_batch_size=4,
                         network_dim=4, network_train_unet_only=True, save_every_n_epochs=1, save_state=True,
                         sample_every_n_epochs=2, sample_steps=2, output_dir=tmp_path / "out", output_name="cat",
                         progress=False))
    old = os.umask(umask)
    try:
        train_lora(config, components=tiny, store=feature_store)
    finally:
        os.umask(old)
    out = tmp_path / "out"
    written = [p for p in out.rglob("*")]
    assert {p.name for p in written} >= {"cat.safetensors", "cat-000001.safetensors", "cat-000002-state",
                                         "optimizer.pt", "cat_epochs.json", "cat_final.json"}
    assert any(p.suffix == ".png" for p in written)
    for path in [out, *written]:
        want = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == want, f"{path}: {oct(stat.S_IMODE(path.stat().st_mode))}"
