"""Output places are checked before any work: a file in the way, a parent that is a file, a
read-only folder, not enough free space -> exit 2, one line naming the option and the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lrfind import outputs
from lrfind.cli import main
from lrfind.errors import ConfigError
from lrfind.outputs import MB, Need

TRAIN = ["--model", "tiny", "--resolution", "64", "--network-dim", "4", "--train-batch-size", "4",
         "--no-progress", "--network-train-unet-only", "--max-train-steps", "2"]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a command gets as far as loading a model (the check must come first).

    Patched in lrfind.models.loading and in every lrfind module that imports load_components at its
    top (the commands' orchestrators), so every lrfind module is imported first.
    """
    import importlib
    import pkgutil
    import sys

    import lrfind
    from lrfind.models import loading

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output places were checked")

    for info in pkgutil.walk_packages(lrfind.__path__, "lrfind."):
        if info.name != "lrfind.__main__":
            importlib.import_module(info.name)
    real = loading.load_components
    for module in [m for name, m in sys.modules.items() if name.startswith("lrfind")]:
        if getattr(module, "load_components", None) is real:
            monkeypatch.setattr(module, "load_components", refuse)


def commands(tmp_path: Path, dataset: Path, bad: Path) -> dict[str, tuple[list[str], str]]:
    """command -> (argv with `bad` as the output place, the option the message must name)."""
    study = ["study", str(dataset), "--name", "s", "--space", "tiny", "--no-progress"]
    return {
        "train --output-dir": (["train", str(dataset), *TRAIN, "--output-dir", str(bad)], "--output-dir"),
        "train --logging-dir": (["train", str(dataset), *TRAIN, "--output-dir", str(tmp_path / "o"),
                                 "--logging-dir", str(bad)], "--logging-dir"),
        "train --cache-dir": (["train", str(dataset), *TRAIN, "--output-dir", str(tmp_path / "o"),
                               "--cache-dir", str(bad)], "--cache-dir"),
        "study --out": ([*study, "--out", str(bad)], "--out"),
        "study --cache-dir": ([*study, "--out", str(tmp_path / "s"), "--cache-dir", str(bad)], "--cache-dir"),
        "study --storage": ([*study, "--out", str(tmp_path / "s"), "--storage", f"sqlite:///{bad / 's.db'}"],
                            "--storage"),
        "probe --out": (["probe", str(dataset), "--out", str(bad)], "--out"),
        "report --out": (["report", "s", "--out", str(bad / "r.html")], "--out"),
        "export-kohya --out": (["export-kohya", "s", "--out", str(bad)], "--out"),
        "demo --out": (["demo", "--out", str(bad)], "--out"),
        "model save DIR": (["model", "save", "tiny", str(bad / "m")], "DIR"),
    }


CASES = sorted(commands(Path("t"), Path("d"), Path("b")))


def _run_refused(argv, option, bad: Path, capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    line = err.strip()
    assert "\n" not in line and line.startswith("lrfind: error: ") and option in line and str(bad) in line
    return line


@pytest.mark.parametrize("case", CASES)
def test_a_file_where_the_folder_should_be_is_refused_first(case, example_dataset, tmp_path, capsys, no_model_load):
    bad = tmp_path / "in_the_way"
    bad.write_text("a file")
    argv, option = commands(tmp_path, example_dataset, bad)[case]
    line = _run_refused(argv, option, bad, capsys)
    assert "is a file" in line
    assert bad.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["in_the_way"]


@pytest.mark.parametrize("case", CASES)
def test_a_folder_under_a_file_is_refused_first(case, example_dataset, tmp_path, capsys, no_model_load):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = blocker / "sub" / "dir"
    argv, option = commands(tmp_path, example_dataset, bad)[case]
    line = _run_refused(argv, option, bad, capsys)
    assert f"cannot be created: {blocker} is a file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_the_default_cache_folder_from_the_environment_is_checked(example_dataset, tmp_path, monkeypatch, capsys,
                                                                  no_model_load):
    bad = tmp_path / "cache_file"
    bad.write_text("x")
    monkeypatch.setenv("LRFIND_CACHE_DIR", str(bad))
    line = _run_refused(["train", str(example_dataset), *TRAIN, "--output-dir", str(tmp_path / "o")],
                        "LRFIND_CACHE_DIR", bad, capsys)
    assert "is a file" in line


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write: a read-only tmpfs as root (root ignores permission
    bits), permission bits otherwise; skipped where neither works."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                                 capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("root, and mounting a read-only tmpfs is not permitted here")
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


@pytest.mark.parametrize("case", ["train --output-dir", "study --out", "report --out", "model save DIR"])
def test_a_read_only_folder_is_refused_first(case, example_dataset, tmp_path, read_only_folder, capsys,
                                             no_model_load):
    bad = read_only_folder / "out"
    argv, option = commands(tmp_path, example_dataset, bad)[case]
    line = _run_refused(argv, option, bad, capsys)
    assert f"cannot write in {read_only_folder}" in line


def test_check_writable_dir_accepts_new_and_existing_folders_and_creates_nothing(tmp_path):
    outputs.check_writable_dir(tmp_path, "--out")
    outputs.check_writable_dir(tmp_path / "a" / "b", "--out")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        outputs.check_writable_file(tmp_path, "--out")


# --- free space ----------------------------------------------------------------------------------

@pytest.mark.parametrize("params, precision, files, state, optimizer, samples, res, grid, raw", [
    # LoRA files only: params x bytes + 64 KiB header each
    (1_000_000, "fp16", 1, False, "AdamW", 0, 64, 0, 2_000_000 + 65536),
    (1_000_000, "float", 3, False, "AdamW", 0, 64, 0, 3 * (4_000_000 + 65536)),
    # + two states at the peak: fp32 LoRA + AdamW's two fp32 moments
    (1_000_000, "fp16", 1, True, "AdamW", 0, 64, 0, 2_000_000 + 65536 + 2 * (12_000_000 + 65536)),
    (1_000_000, "bf16", 1, True, "Prodigy", 0, 64, 0, 2_000_000 + 65536 + 2 * (20_000_000 + 65536)),
    (1_000_000, "fp16", 1, True, "SomethingNew", 0, 64, 0, 2_000_000 + 65536 + 2 * (20_000_000 + 65536)),
    # + samples and grid tiles: 3 bytes a pixel + 4 KiB
    (0, "fp16", 1, False, "AdamW", 4, 512, 8, 65536 + 12 * (3 * 512 * 512 + 4096)),
])
def test_train_output_estimate(params, precision, files, state, optimizer, samples, res, grid, raw):
    got = outputs.train_output_bytes(params, precision, files, state, optimizer, samples, res, grid)
    assert got == int(-(-raw * outputs.MARGIN // 1)) + outputs.EXTRA_BYTES


@pytest.mark.parametrize("latents, res, texts, tokens, width, raw", [
    (10, 512, 10, 77, 768, 10 * (4 * 64 * 64 * 4 + 4096) + 10 * (77 * 768 * 4 + 4096)),
    (20, 64, 0, 77, 32, 20 * (4 * 8 * 8 * 4 + 4096)),
])
def test_cache_estimate(latents, res, texts, tokens, width, raw):
    assert outputs.cache_bytes(latents, res, texts, tokens, width) == int(-(-raw * outputs.MARGIN // 1)) + outputs.EXTRA_BYTES


@pytest.mark.parametrize("epochs, every, files", [(10, None, 1), (10, 1, 10), (10, 3, 4), (3, 5, 1), (1, 1, 1)])
def test_saved_lora_files(epochs, every, files):
    assert outputs.saved_lora_files(epochs, every) == files


def test_study_estimate():
    per_trial = 2 * 100_000 + 65536 + 2 * (3 * 64 * 64 + 4096)
    assert outputs.study_output_bytes(5, 100_000, 2, 64) == int(-(-5 * per_trial * outputs.MARGIN // 1)) + outputs.EXTRA_BYTES


def test_needs_on_one_disk_add_up(tmp_path, monkeypatch):
    free = shutil.disk_usage(tmp_path).free
    outputs.check_free_space([Need(tmp_path / "a", free // 3, "--output-dir"), Need(tmp_path / "b", free // 3, "--cache-dir")])
    with pytest.raises(ConfigError) as caught:
        outputs.check_free_space([Need(tmp_path / "a", free // 2 + MB, "--output-dir"),
                                  Need(tmp_path / "b", free // 2, "--cache-dir")])
    message = str(caught.value)
    assert message.startswith(f"not enough free space in {tmp_path}: need ≈") and "choose another --output-dir" in message


def test_train_on_a_too_small_disk_stops_before_training(example_dataset, tmp_path, monkeypatch, capsys):
    from lrfind.final import run  # the final run's loop: lrfind.training.loop.run_loop as final.run holds it

    real = shutil.disk_usage

    def small(path):  # the output folder's disk has 1 MB free; the rest as they are
        usage = real(path)
        return usage._replace(free=MB) if str(path).startswith(str(tmp_path)) else usage

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(outputs.shutil, "disk_usage", small)
    monkeypatch.setattr(run, "run_loop", no_training)
    rc = main(["train", str(example_dataset), *TRAIN, "--output-dir", str(tmp_path / "out"), "--save-state"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"lrfind: error: not enough free space in {tmp_path}: need ≈")
    assert err.endswith("MB, have 1 MB; free space or choose another --output-dir")
    assert not (tmp_path / "out").exists()


def _small_disk_under(monkeypatch, root: Path, free: int) -> None:
    real = shutil.disk_usage

    def small(path):
        usage = real(path)
        return usage._replace(free=free) if str(path).startswith(str(root)) else usage

    monkeypatch.setattr(outputs.shutil, "disk_usage", small)


def test_study_on_a_too_small_disk_stops_before_any_trial(example_dataset, tmp_path, monkeypatch, capsys):
    import json

    from report_study import probe_report

    out = tmp_path / "studies" / "small"
    out.mkdir(parents=True)
    (out / "probe.json").write_text(json.dumps(probe_report()))
    _small_disk_under(monkeypatch, out, 2 * MB)  # the cache (elsewhere) keeps its space
    rc = main(["study", str(example_dataset), "--name", "small", "--space", "tiny", "--n-trials", "50",
               "--trial-budget", "8", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.startswith(f"lrfind: error: not enough free space in {out}: need ≈")
    assert err.endswith("have 2 MB; free space or choose another --out")
    assert not (out / "trials").exists() and not (tmp_path / "studies" / "small.db").exists()


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if not sys.platform.startswith("linux") or done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here (needs root on Linux)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_train_on_a_real_2mb_disk_is_refused_before_training(example_dataset, small_disk, capsys):
    rc = main(["train", str(example_dataset), *TRAIN, "--output-dir", str(small_disk / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"lrfind: error: not enough free space in {small_disk}: need ≈")
    assert list(small_disk.iterdir()) == []


def test_the_cache_check_counts_both_sdxl_encoders_and_the_pooled_embedding(monkeypatch, tmp_path):
    """An SDXL text entry is [tokens, width 1 + width 2] plus a pooled vector, not text_encoder's alone."""
    from types import SimpleNamespace

    from lrfind.config import DatasetConfig
    from lrfind.network.config import NetworkConfig
    from lrfind.training import checks
    from lrfind.training.config import TrainConfig

    needs = []
    monkeypatch.setattr(checks, "check_free_space", lambda wanted: needs.extend(wanted))
    config = TrainConfig(dataset=DatasetConfig(train_dir=tmp_path, resolution=64), max_train_steps=1,
                         network=NetworkConfig(train_unet_only=True))
    dataset = SimpleNamespace(train_images=[object()] * 3, reg_images=[])
    store = SimpleNamespace(root=tmp_path)
    encoder = lambda width: SimpleNamespace(config=SimpleNamespace(hidden_size=width))  # noqa: E731
    checks.check_cache_space(config, SimpleNamespace(text_encoder=encoder(32)), dataset, store)
    checks.check_cache_space(config, SimpleNamespace(text_encoder=encoder(32), text_encoder_2=encoder(64)),
                             dataset, store)
    sd1, sdxl = (need.bytes for need in needs)
    assert sd1 == outputs.cache_bytes(3, 64, 3, 77, 32)
    assert sdxl == outputs.cache_bytes(3, 64, 3, 78, 96)
