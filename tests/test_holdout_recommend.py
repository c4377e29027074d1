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
