"""Absurd repeat counts and run lengths: refused before any work (exit 2), reported by `dataset check`."""

from __future__ import annotations

import json
import shutil
import tracemalloc

import pytest

from lrfind.cli import main
from lrfind.data.limits import MAX_REPEATS, MAX_TOTAL_STEPS, VIEWS_PER_IMAGE_WARNING

BASE = ["--model", "tiny", "--resolution", "64", "--network-dim", "4", "--no-progress", "--network-train-unet-only"]


def _dataset_with_repeats(example_dataset, tmp_path, repeats: int):
    """The example dataset with its cat folder renamed to `<repeats>_lrfcat cat`."""
    root = tmp_path / "ds"
    shutil.copytree(example_dataset, root)
    (root / "10_lrfcat cat").rename(root / f"{repeats}_lrfcat cat")
    return root


def test_a_typo_in_the_repeats_is_refused_before_anything_loads(example_dataset, tmp_path, capsys):
    root = _dataset_with_repeats(example_dataset, tmp_path, 10_000_000)
    tracemalloc.start()
    rc = main(["train", str(root), *BASE, "--max-train-steps", "3", "--output-dir", str(tmp_path / "out")])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "10000000_lrfcat cat: 10,000,000 repeats is above lrfind's limit of 10,000" in err
    assert "10_lrfcat cat" in err  # the fix, spelled out
    assert peak < 200 * 2**20  # nothing listed per repeat (it took > 4 GB before)
    assert not (tmp_path / "out").exists()


def test_too_many_steps_are_refused_before_the_model_loads(example_dataset, tmp_path, capsys):
    rc = main(["train", str(example_dataset), *BASE, "--max-train-epochs", str(MAX_TOTAL_STEPS),
               "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and f"limit of {MAX_TOTAL_STEPS:,}" in err
    assert "70,000,000 steps" in err and "max_train_epochs" in err


def test_a_run_far_longer_than_the_dataset_needs_warns(example_dataset):
    from lrfind.data.kohya import scan_dataset
    from lrfind.errors import LrfindWarning
    from lrfind.training.config import TrainConfig
    from lrfind.training.kohya_names import train_config
    from lrfind.training.checks import check_run_length

    config = train_config(dict(train_data_dir=example_dataset, resolution=64, max_train_epochs=400))
    dataset = scan_dataset(config.dataset)
    with pytest.warns(LrfindWarning, match=r"each of the 8 training images about 3,500 times"):
        check_run_length(config, dataset)  # 70 steps x 400 epochs / 8 images
    check_run_length(config.model_copy(update={"max_train_epochs": 20}), dataset)  # 175 views: silent


def test_the_cli_prints_an_lrfind_warning_as_one_line(tmp_path, capsys, monkeypatch):
    import warnings

    from lrfind.cli import dataset_cmd
    from lrfind.errors import LrfindWarning

    # register() binds run_example when main() builds the parser: the patched one runs
    monkeypatch.setattr(dataset_cmd, "run_example", lambda args: warnings.warn("look here", LrfindWarning) or 0)
    assert main(["dataset", "example", str(tmp_path / "x")]) == 0
    assert capsys.readouterr().err.strip().splitlines() == ["lrfind: warning: look here"]


def test_dataset_check_reports_the_limit_and_exact_totals_at_10_to_the_23(example_dataset, tmp_path, capsys):
    repeats = 10**23
    root = _dataset_with_repeats(example_dataset, tmp_path, repeats)
    rc = main(["dataset", "check", str(root), "--batch-size", "3", "--epochs", "7", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    [cat] = [row for row in report["concepts"] if row["folder"].endswith("lrfcat cat")]
    assert cat["samples_per_epoch"] == 6 * repeats
    assert report["steps_per_epoch"] == sum(b["steps_per_epoch"] for b in report["buckets"])
    assert sum(b["samples_per_epoch"] for b in report["buckets"]) == 6 * repeats + 2 * 5
    assert report["total_steps"] == report["steps_per_epoch"] * 7
    # per bucket the exact integer ceil: no float anywhere
    assert all(b["steps_per_epoch"] == -(-b["samples_per_epoch"] // 3) for b in report["buckets"])
    assert f"= {report['total_steps']} steps" in report["steps_formula"]
    assert any(f"{repeats:,} repeats is above lrfind's limit of {MAX_REPEATS:,}" in w["message"]
               for w in report["warnings"])
    rc = main(["dataset", "check", str(root)])
    assert rc == 0 and "warnings:" in capsys.readouterr().out


def test_regularisation_fill_is_arithmetic_at_huge_counts():
    from lrfind.data.steps import regularisation_repeats

    third = 10**23 // 3 + 1  # 10**23 + 2 = 3 x third: the first pass (1 each), then whole rounds
    assert regularisation_repeats(10**23 + 2, [1, 1, 1]) == [third] * 3
    assert regularisation_repeats(10**23 + 3, [1, 1, 1]) == [third + 1, third, third]  # one more: the first
    assert sum(regularisation_repeats(10**23, [2, 5, 3])) == 10**23


def test_limits_are_the_documented_ones():
    readme = (__import__("pathlib").Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"{MAX_REPEATS:,}" in readme and f"{MAX_TOTAL_STEPS:,}" in readme and f"{VIEWS_PER_IMAGE_WARNING:,}" in readme


@pytest.mark.parametrize("command", ["study", "probe"])
def test_study_and_probe_refuse_the_typo_too(command, example_dataset, tmp_path, capsys):
    root = _dataset_with_repeats(example_dataset, tmp_path, 10_000_000)
    extra = ["--name", "typo", "--space", "tiny"] if command == "study" else ["--resolution", "64"]
    rc = main([command, str(root), *extra, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "10,000,000 repeats is above" in err
