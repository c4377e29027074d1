"""The recommendation of a study with held-out images: the full run trains on every image (its
steps math says so, the trials' budget scale stays theirs) and its summary gives the diagnosis."""

from __future__ import annotations

import pytest

from lrfind.study.recommend import TrialRecord, diagnosis_sentence, recommend
from lrfind.study.stats import ConceptStats, DatasetStats
from test_recommend import PROBE, STATS, params

TRAINED = DatasetStats("d", (ConceptStats("10_me", "me", 10, (((512, 512), 16),)),
                             ConceptStats("5_hat", "hat", 5, (((512, 512), 4),))))  # 4 of "me" held out


@pytest.fixture
def space(tmp_path):
    from test_recommend import SPACE_TEXT

    from lrfind.study.space import load_space

    path = tmp_path / "space.toml"
    path.write_text(SPACE_TEXT, encoding="utf-8")
    return load_space(path)


def test_the_full_run_trains_on_every_image_and_says_so(space):
    best = TrialRecord(3, "COMPLETE", 0.3, params(epochs=6, repeats=5), {"val_loss": 0.3})
    rec = recommend([best], space, PROBE, TRAINED, final_stats=STATS)
    alone = recommend([best], space, PROBE, STATS)
    assert rec.total_steps == alone.total_steps == 336  # STATS' 24 images, not the trials' 20
    assert rec.steps_math.startswith(alone.steps_math)
    assert "all 24 images train, the 4 the study held out for validation too; its trials trained on 20" in rec.steps_math
    assert rec.trial_steps == recommend([best], space, PROBE, TRAINED).trial_steps  # what the trial trained
    assert recommend([best], space, PROBE, STATS, final_stats=STATS).steps_math == alone.steps_math


def test_the_summary_diagnoses_the_recommended_trial(space):
    attrs = {"val_loss": 0.84, "val_loss_ratio": 0.84, "best_epoch": 4,
             "epoch_val_losses": {"2": 0.9, "4": 0.84, "8": 0.9, "12": 0.95},
             "epoch_drifts": {"2": 0.01, "4": 0.012, "8": 0.02, "12": 0.03}}
    best = TrialRecord(1, "COMPLETE", 0.84, params(epochs=4), attrs)
    text = diagnosis_sentence(best)
    assert text.startswith("Diagnosis of trial 1") and "overfits from epoch 8" in text and "keep epoch 4" in text
    assert text in recommend([best], space, PROBE, STATS).summary
    single = TrialRecord(2, "COMPLETE", 0.9, params(), {"val_loss": 0.9, "val_loss_ratio": 0.9})
    assert diagnosis_sentence(single) == ""  # one point is no curve


@pytest.mark.parametrize("history, drifts, expected", [
    ([(13, 0.8), (27, 0.799), (40, 0.798)], {1: 0.01, 2: 0.02, 3: 0.03}, (1, 0.8)),  # 0.1 % less for 2x drift: no
    ([(13, 0.8), (27, 0.79), (40, 0.7899)], {1: 0.01, 2: 0.02, 3: 0.03}, (2, 0.79)),  # 1.25 % less: worth it
    ([(13, 0.8), (27, 0.799), (40, 0.79)], {1: 0.01, 2: 0.02, 3: 0.03}, (3, 0.79)),  # 1.25 % below epoch 1's
    ([(13, 0.8), (27, 0.799)], {1: 0.02, 2: 0.01}, (2, 0.799)),  # lower loss and less drift: always
    ([(13, 0.8), (27, 0.799)], {1: 0.01}, (2, 0.799)),  # a boundary without drift: loss alone
    ([(13, 0.8), (27, 0.799)], None, (2, 0.799)),  # no drifts: the lowest loss, as before
])
def test_the_sweep_weighs_drift_against_held_out_loss(history, drifts, expected):
    from lrfind.study.epoch_sweep import best_epoch

    assert best_epoch(history, {1: 13, 2: 27, 3: 40}, drifts) == expected
