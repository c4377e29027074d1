"""A full disk: one line, exit 2, nothing half-written, every LoRA file that fits is kept.

The disk fills through a patched low-level writer (`lrfind.atomic.write_to_disk`, which every
atomic write goes through), so these run everywhere; one test also uses a real 2 MB tmpfs where
mounting is permitted (root on Linux).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lrfind import atomic
from lrfind.cli import main
from lrfind.errors import DiskFullError

TRAIN = ["--model", "tiny", "--resolution", "64", "--network-dim", "4", "--train-batch-size", "4",
         "--no-progress", "--network-train-unet-only", "--max-train-epochs", "2", "--save-every-n-epochs", "1",
         "--save-state", "--output-name", "cat"]


def fill_disk_when(monkeypatch, full) -> list[Path]:
    """Make writes for which full(final path) is true fail with ENOSPC; returns the paths refused."""
    refused, real = [], atomic.write_to_disk

    def write(path: Path, data: bytes) -> None:
        final = path.parent / path.name.removeprefix(".").rsplit(".", 2)[0]  # .NAME.xxxx.tmp -> NAME
        if full(final):
            refused.append(final)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(atomic, "write_to_disk", write)
    return refused


def leftovers(folder: Path) -> list[str]:
    """Temp files or folders of atomic writes (names starting with '.') anywhere under folder."""
    return [str(p) for p in folder.rglob(".*")]


@pytest.mark.parametrize("err, full", [
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
    (Exception("Error while serializing: I/O error: No space left on device (os error 28)"), True),  # safetensors
    (sqlite3.OperationalError("database or disk is full"), True),
    (OSError(errno.EACCES, "Permission denied"), False),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"), False),
    (ValueError("bad value"), False),
])
def test_disk_full_is_recognised_in_each_form_libraries_raise(err, full):
    assert atomic.is_disk_full(err) is full
    chained = RuntimeError("wrapper")
    chained.__cause__ = err
    assert atomic.is_disk_full(chained) is full  # an error raised from one


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out" / "a.json"
    atomic.write_json(target, {"old": True})
    fill_disk_when(monkeypatch, lambda path: True)
    with pytest.raises(DiskFullError) as caught:
        atomic.write_json(target, {"new": True})
    message = str(caught.value)
    assert message.startswith(f"disk full while writing a.json ({target.parent}") and "\n" not in message
    assert json.loads(target.read_text()) == {"old": True} and not leftovers(tmp_path)


def test_atomic_folder_on_a_full_disk_names_the_file_in_the_final_folder(tmp_path, monkeypatch):
    target = tmp_path / "run-000002-state"
    fill_disk_when(monkeypatch, lambda path: path.name == "optimizer.pt")
    with pytest.raises(DiskFullError) as caught:
        with atomic.atomic_folder(target) as tmp:
            atomic.write_bytes(tmp / "lora.safetensors", b"x")
            atomic.write_bytes(tmp / "optimizer.pt", b"y")
    assert f"writing optimizer.pt ({target}" in str(caught.value)
    assert not target.exists() and not leftovers(tmp_path)


def test_train_state_write_on_full_disk_warns_and_keeps_every_lora(example_dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    refused = fill_disk_when(monkeypatch, lambda path: path.name == "optimizer.pt")
    rc = main(["train", str(example_dataset), *TRAIN, "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and len(refused) == 2  # both epochs' states refused, training went on
    assert err.count("lrfind: warning: resumable state") == 2 and "disk full while writing optimizer.pt" in err
    assert "Traceback" not in err
    assert (out / "cat-000001.safetensors").is_file() and (out / "cat.safetensors").is_file()
    assert not list(out.glob("*-state")) and not leftovers(out)
    assert [r["epoch"] for r in json.loads((out / "cat_epochs.json").read_text())] == [1, 2]


def test_train_final_lora_on_full_disk_exits_2_after_the_earlier_files(example_dataset, tmp_path, monkeypatch,
                                                                       capsys):
    out = tmp_path / "out"
    fill_disk_when(monkeypatch, lambda path: path.name == "cat.safetensors")
    rc = main(["train", str(example_dataset), *TRAIN, "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == err.strip().splitlines()[-1]  # one line
    assert err.startswith(f"lrfind: error: disk full while writing cat.safetensors ({out}")
    # Epoch 1 is complete on disk; epoch 2's records and state were never written, its LoRA failed.
    assert (out / "cat-000001.safetensors").is_file() and (out / "cat-000001-state" / "state.json").is_file()
    assert not (out / "cat.safetensors").exists() and not (out / "cat-000002-state").exists()
    assert [r["epoch"] for r in json.loads((out / "cat_epochs.json").read_text())] == [1]
    assert not leftovers(out)


def test_the_final_lora_is_written_before_the_last_state(example_dataset, tmp_path, monkeypatch):
    out, order = tmp_path / "out", []
    real = atomic.write_to_disk
    monkeypatch.setattr(atomic, "write_to_disk", lambda path, data: (order.append(path), real(path, data)))
    assert main(["train", str(example_dataset), *TRAIN, "--output-dir", str(out)]) == 0
    names = [p.parent.name.split(".")[1] if p.parent.name.startswith(".") else p.name.split(".")[1] for p in order]
    last_lora, last_records = names.index("cat"), max(i for i, n in enumerate(names) if n == "cat_epochs")
    first_last_state = names.index("cat-000002-state")
    assert last_lora < last_records < first_last_state


def test_report_on_full_disk_exits_2(tmp_path, monkeypatch, capsys):
    from report_study import build_study

    url, study_dir = build_study(tmp_path)
    out = tmp_path / "reports" / "cats.html"
    fill_disk_when(monkeypatch, lambda path: path.suffix == ".html")
    rc = main(["report", "cats", "--storage", url, "--study-dir", str(study_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"lrfind: error: disk full while writing cats.html ({out.parent}")
    assert not out.exists() and not leftovers(tmp_path / "reports")


def test_model_save_on_full_disk_exits_2_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import safetensors.torch
    from safetensors import SafetensorError

    def full(*args, **kwargs):  # what safetensors' Rust writer raises on ENOSPC (measured on a tmpfs)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    rc = main(["model", "save", "tiny", str(tmp_path / "m")])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # transformers may log before it
    assert rc == 2 and last.startswith(f"lrfind: error: disk full while writing m ({tmp_path}")
    assert list(tmp_path.iterdir()) == []


def _can_mount_tmpfs(folder: Path) -> bool:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB filesystem (tmpfs), or a skip where mounting is not permitted."""
    folder = tmp_path / "small"
    folder.mkdir()
    if not sys.platform.startswith("linux") or not _can_mount_tmpfs(folder):
        pytest.skip("mounting a tmpfs is not permitted here (needs root on Linux)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_model_save_on_a_real_full_disk(small_disk, capsys):
    rc = main(["model", "save", "tiny", str(small_disk / "m")])  # the tiny model is ≈ 10 MB
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and last.startswith(f"lrfind: error: disk full while writing m ({small_disk}")
    assert list(small_disk.iterdir()) == []


@pytest.fixture(scope="module")
def probe_json(example_dataset, tmp_path_factory, tiny, feature_store):
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.probe import run_probe

    out = tmp_path_factory.mktemp("probe")
    run_probe(ProbeConfig(dataset={"train_dir": example_dataset, "resolution": 64, "batch_size": 2}, steps=40, out=out,
                          progress=False),
              components=tiny, store=feature_store)
    return out / "probe.json"


def study_args(example_dataset, tmp_path, probe_json, name="full") -> list[str]:
    out = tmp_path / "studies" / name
    out.mkdir(parents=True)
    (out / "probe.json").write_bytes(probe_json.read_bytes())
    return ["study", str(example_dataset), "--name", name, "--space", "tiny", "--n-trials", "2",
            "--trial-budget", "8", "--out", str(out), "--no-progress", "--score", "loss"]


FULL_DISK_STUDY = """
import errno, sys
from lrfind import atomic
from lrfind.cli import main
real = atomic.write_to_disk
def write(path, data):
    if path.name.startswith(".lora.safetensors."):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    real(path, data)
atomic.write_to_disk = write
sys.exit(main(sys.argv[1:]))
"""


def test_study_trial_file_on_full_disk_exits_2(example_dataset, tmp_path, probe_json):
    # In its own process: what a user sees on stderr, Optuna's log of the failed trial included.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", FULL_DISK_STUDY, *study_args(example_dataset, tmp_path, probe_json)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith("lrfind: error: disk full while writing lora.safetensors (")
    assert "Traceback" not in done.stderr and not leftovers(tmp_path / "studies")


def test_study_database_on_full_disk_exits_2_naming_the_database(example_dataset, tmp_path, probe_json, monkeypatch,
                                                                 capsys):
    from optuna.storages import RDBStorage

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(RDBStorage, "set_trial_intermediate_value", full)
    rc = main(study_args(example_dataset, tmp_path, probe_json))
    err = capsys.readouterr().err
    db = tmp_path / "studies" / "full.db"
    assert rc == 2 and err.strip().splitlines()[-1].startswith(f"lrfind: error: disk full while writing full.db "
                                                               f"({db.parent}")
