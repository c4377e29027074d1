"""Reading a kohya sd-scripts TensorBoard log: tags as kohya names them, its folder layout."""

from __future__ import annotations

import math

import pytest

from lrfind.errors import LrfindError
from lrfind.probe.plateau import analyse_curve
from lrfind.probe.tb_reader import pick_dlr_tag, read_dlr_curve

LEVEL = 0.08


def dlr_at(step: int, level: float = LEVEL) -> float:
    """DAdaptAdam-like: from 1e-6, x1.37 per step, flat at `level` from step ~36."""
    return min(1e-6 * math.exp(0.31 * step), level)


def write_kohya_run(logdir, timestamp: str, scalars: dict, steps: int = 80):
    """Write `scalars` (tag -> f(step)) where kohya does: <logdir>/<timestamp>/network_train."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = logdir / timestamp / "network_train"
    writer = SummaryWriter(log_dir=str(run_dir))
    for step in range(1, steps + 1):
        for tag, value_at in scalars.items():
            writer.add_scalar(tag, value_at(step), global_step=step)
    writer.close()
    return run_dir


KOHYA_DADAPT_TAGS = {
    "loss/current": lambda s: 0.2 + 0.1 / s,
    "loss/average": lambda s: 0.25,
    "lr/unet": lambda s: 1.0,
    "lr/textencoder": lambda s: 1.0,
    "lr/d*lr/unet": dlr_at,
    "lr/d*lr/textencoder": lambda s: dlr_at(s, 0.5 * LEVEL),
    "lr/group0": lambda s: 1.0,
    "lr/d*lr/group0": lambda s: dlr_at(s, 2 * LEVEL),  # differs so the choice is visible
}


def test_kohya_dadaptation_log_reads_the_unet_tag_and_its_plateau(tmp_path):
    run_dir = write_kohya_run(tmp_path, "20260101120000", KOHYA_DADAPT_TAGS)
    curve = read_dlr_curve(tmp_path)
    assert curve.tag == "lr/d*lr/unet"
    assert curve.run_dir == str(run_dir) and curve.other_runs == ()
    assert set(KOHYA_DADAPT_TAGS) <= set(curve.available_tags)
    assert curve.steps == tuple(range(1, 81))
    assert curve.values[0] == pytest.approx(dlr_at(1), rel=1e-5)
    assert curve.losses[-1] == pytest.approx(0.2 + 0.1 / 80, rel=1e-5)
    result = analyse_curve(curve.steps, curve.values, curve.losses_at_steps())
    assert result.status == "converged"
    assert result.value == pytest.approx(LEVEL, rel=1e-3)
    assert 33 <= result.plateau_step <= 40


@pytest.mark.parametrize(
    "tags, expected",
    [
        ({"lr/d*lr": dlr_at, "lr/unet": lambda s: 1.0}, "lr/d*lr"),  # older kohya
        ({"lr/d*lr/group1": dlr_at, "lr/d*lr/group0": dlr_at}, "lr/d*lr/group0"),
        ({"lr/d*lr/zz": dlr_at, "lr/d*lr/textencoder": dlr_at}, "lr/d*lr/textencoder"),
    ],
    ids=["plain d*lr", "groups only", "first sorted"],
)
def test_tag_choice_on_written_logs(tmp_path, tags, expected):
    write_kohya_run(tmp_path, "20260101120000", tags, steps=10)
    curve = read_dlr_curve(tmp_path)
    assert curve.tag == expected
    assert curve.loss_steps == ()
    assert len(curve.losses_at_steps()) == 10 and all(map(math.isnan, curve.losses_at_steps()))


@pytest.mark.parametrize(
    "tags, expected",
    [
        (["lr/d*lr/group0", "lr/d*lr", "lr/d*lr/unet"], "lr/d*lr/unet"),
        (["lr/d*lr/group0", "lr/d*lr"], "lr/d*lr"),
        (["lr/d*lr/group1", "lr/d*lr/group0"], "lr/d*lr/group0"),
        (["lr/d*lr/te", "lr/d*lr/b"], "lr/d*lr/b"),
        (["lr/unet", "loss/current"], None),
        ([], None),
    ],
)
def test_pick_dlr_tag_table(tags, expected):
    assert pick_dlr_tag(tags) == expected


def test_newest_run_is_read_and_the_others_named(tmp_path):
    older = write_kohya_run(tmp_path, "20260101110000", {"lr/d*lr/unet": lambda s: 0.5}, steps=5)
    newest = write_kohya_run(tmp_path, "20260101120000", {"lr/d*lr/unet": lambda s: 0.25}, steps=5)
    curve = read_dlr_curve(tmp_path)
    assert curve.run_dir == str(newest) and curve.other_runs == (str(older),)
    assert curve.values == pytest.approx((0.25,) * 5)


def test_no_dlr_tag_is_one_line_naming_folder_tags_and_fix(tmp_path):
    run_dir = write_kohya_run(tmp_path, "20260101120000", {"lr/unet": lambda s: 1e-4,
                                                            "loss/current": lambda s: 0.1}, steps=3)
    with pytest.raises(LrfindError) as err:
        read_dlr_curve(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert str(run_dir) in message and "lr/unet" in message and "loss/current" in message
    assert "DAdaptAdam" in message and "--log_with tensorboard" in message


def test_missing_folder_and_folder_without_events_are_one_line_errors(tmp_path):
    with pytest.raises(LrfindError, match="does not exist"):
        read_dlr_curve(tmp_path / "nope")
    (tmp_path / "empty" / "20260101120000").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no events here")
    with pytest.raises(LrfindError, match="no TensorBoard event files") as err:
        read_dlr_curve(tmp_path / "empty")
    assert "\n" not in str(err.value)


def test_a_single_event_file_can_be_given(tmp_path):
    run_dir = write_kohya_run(tmp_path, "20260101120000", {"lr/d*lr": dlr_at}, steps=12)
    event_file = next(run_dir.iterdir())
    curve = read_dlr_curve(event_file)
    assert curve.tag == "lr/d*lr" and len(curve.steps) == 12


def test_losses_at_steps_carry_the_last_logged_loss_over_gaps():
    from lrfind.probe.tb_reader import TBCurve

    curve = TBCurve("lr/d*lr", (1, 2, 3, 4, 5), (1e-6,) * 5, (2, 4), (0.5, math.nan), ())
    aligned = curve.losses_at_steps()
    assert math.isnan(aligned[0])  # before the first logged loss
    assert aligned[1:3] == [0.5, 0.5]
    assert math.isnan(aligned[3]) and math.isnan(aligned[4])  # a NaN loss stays NaN


def test_loss_logged_one_step_short_is_not_divergence(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "20260101120000" / "network_train"))
    for step in range(1, 81):
        writer.add_scalar("lr/d*lr/unet", dlr_at(step), global_step=step)
        if step < 80:
            writer.add_scalar("loss/current", 0.1, global_step=step)
    writer.close()
    curve = read_dlr_curve(tmp_path)
    assert analyse_curve(curve.steps, curve.values, curve.losses_at_steps()).status == "converged"
