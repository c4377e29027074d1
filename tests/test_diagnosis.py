"""Diagnosis of a run's curves (lrfind.study.diagnosis): a table of curves and their verdicts."""

from __future__ import annotations

import math

import pytest

from lrfind.study.diagnosis import EpochCurves, SampleStats, curves_from_trial, diagnose

NAN = math.nan
FALLING = (0.10, 0.09, 0.08, 0.075, 0.07, 0.065, 0.06)

CASES = [
    # (name, curves, verdict, from epoch, best epoch, words in the text)
    ("training falls while held-out rises: overfits from the first epoch above its minimum",
     EpochCurves(epochs=(1, 2, 3, 4, 5, 6, 7), held_out_loss=(1.0, 0.9, 0.85, 0.84, 0.86, 0.9, 0.95), base_loss=1.0,
                 train_loss=FALLING),
     "overfits", 5, 4, ("keep epoch 4", "lowest at epoch 4", "network_dim")),
    ("a sweep's epoch counts, not consecutive: the first count past the rise",
     EpochCurves(epochs=(2, 4, 8, 16), held_out_loss=(0.9, 0.8, 0.83, 0.9), base_loss=1.0,
                 train_loss=(0.1, 0.08, 0.06, 0.04)),
     "overfits", 8, 4, ("keep epoch 4",)),
    ("no better than the base model at most epochs while training falls: memorises from the first",
     EpochCurves(epochs=(1, 2, 3, 4), held_out_loss=(1.01, 1.02, 0.99, 1.03), base_loss=1.0,
                 train_loss=(0.1, 0.09, 0.08, 0.07)),
     "overfits", 1, 3, ("memorises", "lower lr")),
    ("held-out flat after its best while drift doubles: overfits where drift has doubled",
     EpochCurves(epochs=(1, 2, 3, 4), held_out_loss=(0.95, 0.9, 0.9, 0.9), base_loss=1.0,
                 drift=(0.01, 0.02, 0.03, 0.05)),
     "overfits", 4, 2, ("drift",)),
    ("held-out still falling at the last epoch: underfits",
     EpochCurves(epochs=(1, 2, 3, 4), held_out_loss=(0.99, 0.95, 0.9, 0.85), base_loss=1.0,
                 train_loss=(0.1, 0.09, 0.08, 0.07)),
     "underfits", None, 4, ("still falling", "more epochs")),
    ("nothing learnt: held-out at the base model's, training flat",
     EpochCurves(epochs=(1, 2, 3), held_out_loss=(0.999, 0.998, 0.9985), base_loss=1.0, train_loss=(0.1, 0.1, 0.1)),
     "underfits", None, 2, ("next to nothing", "higher lr")),
    ("lowest inside the range, no rise beyond noise: fits",
     EpochCurves(epochs=(1, 2, 3, 4), held_out_loss=(0.95, 0.9, 0.89, 0.895), base_loss=1.0,
                 train_loss=(0.1, 0.09, 0.085, 0.08), drift=(0.01, 0.012, 0.013, 0.014)),
     "fits", None, 3, ("lowest at epoch 3",)),
    ("NaN held-out loss: burned at that epoch",
     EpochCurves(epochs=(1, 2, 3), held_out_loss=(0.9, NAN, NAN), base_loss=1.0),
     "burned", 2, 1, ("not a number", "a third of the lr")),
    ("NaN training loss",
     EpochCurves(epochs=(1, 2), held_out_loss=(0.9, 0.8), base_loss=1.0, train_loss=(0.1, math.inf)),
     "burned", 2, 2, ("training loss is not a number",)),
    ("held-out loss 1.6x the base model's: exploded",
     EpochCurves(epochs=(1, 2, 3), held_out_loss=(0.9, 1.6, 3.0), base_loss=1.0),
     "burned", 2, 1, ("exploded", "larger batch size")),
    ("training loss ends 4x its lowest",
     EpochCurves(epochs=(1, 2, 3), held_out_loss=(0.9, 0.95, 1.2), base_loss=1.0, train_loss=(0.1, 0.05, 0.2)),
     "burned", 3, 1, ("exploding",)),
    ("benchmarks/RESULTS.md's lr 1e-2 run: worse than the base model nearly always, training loss wandering",
     EpochCurves(epochs=(1, 3, 10, 20, 30, 48, 100),
                 held_out_loss=(0.12708, 0.12547, 0.12028, 0.12596, 0.12554, 0.11699, 0.12893), base_loss=0.11942,
                 train_loss=(0.11080, 0.10533, 0.09752, 0.10657, 0.10081, 0.09495, 0.10146),
                 drift=(0.0122, 0.0169, 0.0199, 0.0366, 0.0316, 0.0354, 0.0503)),
     "burned", 20, 48, ("erratic", "6 of 7 epochs")),
    ("black samples",
     EpochCurves(epochs=(1, 2), held_out_loss=(0.9, 0.85), base_loss=1.0,
                 samples=(SampleStats(0.01, 0.01), SampleStats(0.5, 0.2), SampleStats(0.02, 0.05))),
     "burned", None, 2, ("2 of 3 samples",)),
    ("one odd sample of three is not a burned run",
     EpochCurves(epochs=(1, 2), held_out_loss=(0.9, 0.85), base_loss=1.0, train_loss=(0.1, 0.08),
                 samples=(SampleStats(0.5, 0.01), SampleStats(0.5, 0.2), SampleStats(0.4, 0.25))),
     "underfits", None, 2, ("still falling",)),
]


@pytest.mark.parametrize("name, curves, verdict, start, best, words", CASES, ids=[c[0] for c in CASES])
def test_diagnosis(name, curves, verdict, start, best, words):
    result = diagnose(curves)
    assert (result.verdict, result.from_epoch, result.best_epoch) == (verdict, start, best), result.text
    assert result.text.startswith(verdict + (f" from epoch {start}" if start is not None else ""))
    for word in words:
        assert word in result.text, (word, result.text)
    assert (verdict == "fits") == (not result.remedies)


def test_bad_curves_are_refused():
    with pytest.raises(ValueError, match="3 values for 2 epochs"):
        EpochCurves(epochs=(1, 2), held_out_loss=(1.0, 0.9, 0.8), base_loss=1.0)
    with pytest.raises(ValueError, match="ascending"):
        EpochCurves(epochs=(2, 1), held_out_loss=(1.0, 0.9), base_loss=1.0)
    with pytest.raises(ValueError, match="base model's held-out loss"):
        diagnose(EpochCurves(epochs=(1,), held_out_loss=(1.0,), base_loss=0.0))


def test_curves_from_a_trials_attributes():
    curves = curves_from_trial({"10": 0.8, "2": 0.9}, 1.0, {"2": 0.01, "10": 0.03})
    assert curves.epochs == (2, 10) and curves.held_out_loss == (0.9, 0.8) and curves.drift == (0.01, 0.03)
    assert curves_from_trial({"2": 0.9, "4": 0.8}, 1.0, {"2": 0.01}).drift == ()  # a partial drift curve: none


def test_curves_from_a_trial_with_training_losses():
    curves = curves_from_trial({"1": 1.01, "2": 1.02, "3": 0.99, "4": 1.03}, 1.0,
                               epoch_train_losses={"1": 0.1, "2": 0.09, "3": 0.08, "4": 0.07})
    assert curves.train_loss == (0.1, 0.09, 0.08, 0.07)
    assert diagnose(curves).text.startswith("overfits from epoch 1")


def test_a_trials_diagnosis_from_its_attributes():
    from lrfind.study.diagnosis import diagnose_trial

    attrs = {"val_loss": 0.84, "val_loss_ratio": 0.84, "epoch_val_losses": {"2": 0.9, "4": 0.84, "8": 0.9},
             "epoch_train_losses": {"2": 0.1, "4": 0.08, "8": 0.06}, "epoch_drifts": {"2": 0.01, "4": 0.02}}
    found = diagnose_trial(attrs)
    assert (found.verdict, found.from_epoch, found.best_epoch) == ("overfits", 8, 4)
    assert diagnose_trial({"val_loss": 0.9, "val_loss_ratio": 0.9, "epoch_val_losses": {"2": 0.9}}) is None
    assert diagnose_trial({**attrs, "val_loss_ratio": None}) is None
