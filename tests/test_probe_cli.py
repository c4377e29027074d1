"""`lrfind probe` end to end on the tiny model, and on a kohya TensorBoard log."""

from __future__ import annotations

import json

import pytest

from lrfind.cli import main


def test_probe_on_tiny_model_writes_probe_json_and_page(example_dataset, tmp_path, capsys):
    out = tmp_path / "probe"
    rc = main(["probe", str(example_dataset), "--model", "tiny", "--resolution", "64", "--steps", "60",
               "--batch-size", "2", "--method", "both", "--range-steps", "30", "--range-eval-every", "3",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    report = json.loads((out / "probe.json").read_text())
    for key in ("unet_lr", "adamw_lr", "lion_lr", "lion_weight_decay_factor", "text_encoder_lr",
                "text_encoder_lr_range", "prodigy", "plateau_step", "plateau_value", "confidence", "status",
                "network_dim", "network_alpha", "optimizer", "steps", "curve", "range_test"):
        assert key in report, key
    assert report["status"] in ("converged", "still_rising")
    assert report["curve"][0][1] < report["curve"][-1][1]  # d*lr rose from d0
    assert report["lion_lr"] == report["unet_lr"] / 3
    lo, hi = report["text_encoder_lr_range"]
    assert lo < report["text_encoder_lr"] < hi
    assert len(report["curve"]) == 60 and report["range_test"]["points"]
    assert (out / "probe.html").stat().st_size > 100_000  # plotly inlined
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    text = capsys.readouterr().out
    assert "unet_lr" in text and "side by side" in text and "steps per epoch" in text


def test_prodigy_probe(example_dataset, tmp_path):
    out = tmp_path / "prodigy"
    assert main(["probe", str(example_dataset), "--optimizer", "prodigy", "--resolution", "64", "--steps", "40",
                 "--batch-size", "4", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "probe.json").read_text())
    assert report["optimizer"] == "prodigy" and report["prodigy"]["safeguard_warmup"] is True


def test_from_tensorboard_reads_a_kohya_log(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path / "kohya_logs"
    writer = SummaryWriter(str(logdir / "20260101120000" / "network_train"))
    for step in range(1, 121):
        d_lr = 1e-6 * (1.35 ** step) if step < 45 else 1e-6 * 1.35**45
        writer.add_scalar("lr/d*lr/unet", d_lr, step)
        writer.add_scalar("lr/d*lr/group0", d_lr, step)
        writer.add_scalar("loss/current", 0.1, step)
        writer.add_scalar("lr/unet", 1.0, step)
    writer.close()
    out = tmp_path / "analysis"
    assert main(["probe", "--from-tensorboard", str(logdir), "--out", str(out)]) == 0
    report = json.loads((out / "probe.json").read_text())
    assert report["status"] == "converged"
    from lrfind.optimizers import optimizer_entry

    assert abs(report["plateau_value"] / (1e-6 * 1.35**45) - 1) < 0.05
    assert report["unet_lr"] == pytest.approx(report["plateau_value"] * optimizer_entry("dadaptation").plateau_factor)
    assert report["source"]["tag"] == "lr/d*lr/unet"
    assert "unet_lr" in capsys.readouterr().out


def test_bad_input_exit_2(tmp_path, capsys):
    assert main(["probe"]) == 2
    assert main(["probe", "--from-tensorboard", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert main(["probe", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 3


def test_a_diverged_probe_derives_from_the_plateau_before_divergence_or_not_at_all():
    from lrfind.optimizers import optimizer_entry
    from lrfind.probe.plateau import analyse_curve
    from lrfind.probe.probe import _derive

    nan = float("nan")
    steps = list(range(1, 121))
    held = [min(1e-6 * 1.4**s, 0.05) for s in steps[:90]]  # rises, then holds 0.05 for ~60 steps
    values = held + [0.05 * 1.5**k for k in range(1, 26)] + [nan] * 5  # then runs away and diverges
    plateau = analyse_curve(steps, values, [1.0] * 115 + [nan] * 5)
    assert plateau.status == "diverged"
    assert plateau.earlier_plateau[2] == pytest.approx(0.05, rel=0.1)  # not the runaway's 1.3e3
    derived = _derive(plateau, "dadaptation")
    assert derived.unet_lr == pytest.approx(plateau.earlier_plateau[2] * optimizer_entry("dadaptation").plateau_factor)
    rising_then_nan = analyse_curve(steps[:30], [1e-6 * 1.5**s for s in steps[:25]] + [nan] * 5, [1.0] * 30)
    assert rising_then_nan.status == "diverged" and _derive(rising_then_nan, "dadaptation") is None


@pytest.mark.parametrize("low,high,needle", [
    ("1", "1e-6", "range_min_lr 1 must be below range_max_lr 1e-06"),  # inverted: was "(ok)" and an lr
    ("0.01", "0.01", "must be below"),
    ("0", "0.1", "range_min_lr"),
    ("-1e-6", "0.1", "range_min_lr"),
    ("1e-6", "inf", "range_max_lr"),
])
def test_a_range_test_that_does_not_go_up_exits_2(low, high, needle, example_dataset, tmp_path, capsys):
    out = tmp_path / "probe"
    rc = main(["probe", str(example_dataset), "--method", "range", f"--range-min-lr={low}", f"--range-max-lr={high}",
               "--resolution", "64", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("flags, needle", [
    (["--network-dim", "0"], "network_dim:"),
    (["--resolution", "65"], "resolution:"),
    (["--network_alpha", "-1"], "network_alpha:"),
    (["--caption-extension", " "], "caption_extension:"),
])
def test_a_bad_nested_option_exits_2_named_by_its_flag(flags, needle, example_dataset, tmp_path, capsys):
    # the flags keep their flat names while ProbeConfig nests the dataset, model and network parts
    out = tmp_path / "probe"
    rc = main(["probe", str(example_dataset), *flags, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith(f"lrfind: error: {needle}"), err
    assert not out.exists()


def test_dataset_options_need_a_dataset_with_from_tensorboard(tmp_path, capsys):
    rc = main(["probe", "--from-tensorboard", str(tmp_path), "--batch-size", "2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--batch-size" in err and "DATASET" in err and len(err.splitlines()) == 1
