"""Recommendation: best trial, closeness numbers, top-3 agreement, full-run step math, summary."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from lrfind.errors import LrfindError
from lrfind.study.recommend import NoCompletedTrials, TrialRecord, recommend
from lrfind.study.space import load_space
from lrfind.study.trial_params import suggest
from lrfind.study.stats import ConceptStats, DatasetStats
from probe_reports import probe_with_lr

PROBE = probe_with_lr(1e-3, 8, 8)
STATS = DatasetStats("d", (ConceptStats("10_me", "me", 10, (((512, 512), 20),)),
                           ConceptStats("5_hat", "hat", 5, (((512, 512), 4),))))
SPACE_TEXT = """
network_dim = [8, 16, 32]
network_alpha_fraction = { range = [0.25, 1.0] }
epochs = { range = [4, 12] }
repeats = [5, 10]
lr_multiplier = { range = [0.25, 4.0] }
optimizer = ["AdamW", "Lion"]
lr_scheduler = "cosine"
[fixed]
train_batch_size = 2
[budget]
trial_budget_steps = 100
eval_every_steps = 10
"""

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(SPACE_TEXT, encoding="utf-8")
    return load_space(path)


def params(dim=16, fraction=0.5, epochs=8, repeats=10, multiplier=1.0, optimizer="AdamW"):
    return {"network_dim": dim, "network_alpha_fraction": fraction, "epochs": epochs, "repeats": repeats,
            "lr_multiplier": multiplier, "optimizer": optimizer, "lr_scheduler": "cosine"}


def trial(number, value, state="COMPLETE", **kw):
    return TrialRecord(number, state, value, params(**kw), {"val_loss": value, "note": "x"})


def test_best_completed_trial_wins_and_others_are_ignored(space):
    trials = [trial(0, 0.50), trial(1, 0.10, state="PRUNED", dim=8), trial(2, float("nan"), dim=32),
              trial(3, 0.30, dim=32, epochs=4), trial(4, None, state="FAIL"), trial(5, 0.40)]
    rec = recommend(trials, space, PROBE, STATS)
    assert rec.trial_number == 3 and rec.network_dim == 32 and rec.epochs == 4
    assert (rec.closeness.completed, rec.closeness.pruned, rec.closeness.failed) == (3, 1, 1)
    assert rec.metrics == {"val_loss": 0.30}
    assert recommend(trials, space, PROBE, STATS, direction="maximize").trial_number == 0


def test_full_run_values_and_step_math(space):
    rec = recommend([trial(7, 0.2, dim=32, fraction=0.25, epochs=6, repeats=5, multiplier=2.0, optimizer="Lion")],
                    space, PROBE, STATS)
    assert rec.network_alpha == 8.0
    # probe alpha 8, trial alpha 8: sqrt_alpha rescale x1 (dim ignored); x2 multiplier; Lion / 3
    assert rec.unet_lr == pytest.approx(1e-3 * (8 / 8) ** 0.5 * 2 / 3)
    assert rec.text_encoder_lr == pytest.approx(rec.unet_lr * 0.25)
    assert rec.optimizer_args == {"weight_decay": pytest.approx(0.03)}
    # repeats 5 for the most-repeated folder (10_me), 10_me : 5_hat keeps 2 : 1 -> 5 and 3 (2.5 rounds up)
    assert [c.repeats for c in rec.concept_repeats] == [5, 3]
    samples = 20 * 5 + 4 * 3
    assert rec.total_steps == math.ceil(samples / 2) * 6 == 336
    assert rec.steps_math == ("(20 images × 5 repeats + 4 images × 3 repeats = 112) × 6 epochs / batch 2 = "
                              "336 steps")
    # the trial trained a scaled run; the longest: repeats 10 and 5, 12 epochs = (200 + 20) / 2 x 12 steps
    assert rec.trial_steps == round(336 * 100 / 1320) == 25
    assert rec.train_values["max_train_epochs"] == 6
    summary = rec.summary
    assert "336 steps" in summary and "trial 7" in summary
    assert "'10_me' → '5_me'" in summary and "'5_hat' → '3_hat'" in summary
    assert "only one of 1 completed" in summary and rec.confidence == "low"
    assert rec.agreement == {}


def test_closeness_numbers(space):
    values = [1.0, 1.1, 1.5, 2.0, 3.0]
    trials = [trial(i, v, dim=16) for i, v in enumerate(values)]
    c = recommend(trials, space, PROBE, STATS).closeness
    # inclusive quartiles of the five values: 1.1 and 2.0
    assert c.runner_up == 1 and c.runner_up_gap == pytest.approx(0.1)
    assert c.spread == pytest.approx(0.9) and c.relative_gap == pytest.approx(0.1 / 0.9)
    assert c.top == ((0, 1.0), (1, 1.1), (2, 1.5))


def test_one_outlier_does_not_shrink_the_gap(space):
    base = [trial(i, v) for i, v in enumerate([1.0, 1.5, 1.6, 1.7, 1.8])]
    with_outlier = base + [trial(9, 1000.0)]
    gap = recommend(base, space, PROBE, STATS).closeness.relative_gap
    assert recommend(with_outlier, space, PROBE, STATS).closeness.relative_gap > gap / 2


@pytest.mark.parametrize("top, agree", [
    # (dim, fraction, epochs, multiplier, optimizer) of the top 3 -> which parameters agree
    ([(16, 0.5, 8, 1.0, "AdamW")] * 3, {"network_dim": True, "network_alpha_fraction": True, "epochs": True,
                                        "lr_multiplier": True, "optimizer": True}),
    ([(16, 0.5, 8, 1.0, "AdamW"), (32, 0.5, 8, 1.0, "AdamW"), (16, 0.5, 8, 1.0, "Lion")],
     {"network_dim": False, "optimizer": False, "epochs": True}),
    # epochs range 4..12: a quarter is 2 epochs; lr_multiplier range x16: a quarter is x2 (log scale)
    ([(16, 0.5, 8, 1.0, "AdamW"), (16, 0.5, 10, 1.9, "AdamW"), (16, 0.5, 9, 1.2, "AdamW")],
     {"epochs": True, "lr_multiplier": True}),
    ([(16, 0.5, 4, 0.5, "AdamW"), (16, 0.5, 7, 1.1, "AdamW"), (16, 0.5, 5, 0.6, "AdamW")],
     {"epochs": False, "lr_multiplier": False}),
])
def test_top_three_agreement(space, top, agree):
    trials = [trial(i, 0.1 * (i + 1), dim=d, fraction=f, epochs=e, multiplier=m, optimizer=o)
              for i, (d, f, e, m, o) in enumerate(top)]
    trials.append(trial(9, 5.0, dim=8, epochs=12))  # outside the top 3: ignored
    agreement = {name: a.agree for name, a in recommend(trials, space, PROBE, STATS).agreement.items()}
    assert "lr_scheduler" not in agreement  # fixed in this space: nothing to agree on
    for name, expected in agree.items():
        assert agreement[name] is expected, name


@pytest.mark.parametrize("n, vary, confidence", [
    (3, False, "low"),  # too few completed trials
    (10, False, "high"),  # enough trials, the top 3 agree
    (6, False, "medium"),
    (10, True, "low"),  # the top 3 disagree on most parameters
])
def test_confidence(space, n, vary, confidence):
    trials = []
    for i in range(n):
        if vary:
            kw = dict(dim=[8, 16, 32][i % 3], epochs=[4, 8, 12][i % 3], multiplier=[0.25, 1.0, 4.0][i % 3],
                      optimizer=["AdamW", "Lion"][i % 2], fraction=[0.25, 0.5, 1.0][i % 3])
        else:
            kw = dict(dim=16)
        trials.append(trial(i, 1.0 + i * 0.1, **kw))
    rec = recommend(trials, space, PROBE, STATS)
    assert rec.confidence == confidence
    assert f"How sure: {confidence}" in rec.summary


def test_no_completed_trial_is_a_clear_error(space):
    trials = [trial(0, None, state="PRUNED"), trial(1, None, state="FAIL"), trial(2, None, state="FAIL")]
    with pytest.raises(NoCompletedTrials) as err:
        recommend(trials, space, PROBE, STATS)
    assert isinstance(err.value, LrfindError)
    assert "3 trials: 1 pruned, 2 failed" in str(err.value) and "\n" not in str(err.value)


def test_from_optuna_study_and_json(space):
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                sampler=optuna.samplers.RandomSampler(seed=3))
    for i in range(8):
        t = study.ask()
        p = suggest(t, space)
        t.set_user_attr("clip_i", 0.5)
        if i == 2:
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(t, abs(math.log(p.lr_multiplier)) + p.network_dim / 100)
    records = [TrialRecord.from_frozen_trial(t) for t in study.trials]
    assert records[2].state == "PRUNED" and records[2].value is None
    rec = recommend(records, space, PROBE, STATS)
    assert rec.trial_number == study.best_trial.number and rec.value == study.best_value
    data = json.loads(json.dumps(rec.to_dict()))
    assert data["summary"] == rec.summary
    assert data["total_steps"] == rec.total_steps and data["closeness"]["pruned"] == 1
    assert data["concept_repeats"][0]["folder_name"] == f"{rec.concept_repeats[0].repeats}_me"
    assert set(data["agreement"]) <= {"network_dim", "network_alpha_fraction", "epochs", "repeats",
                                      "lr_multiplier", "optimizer"}
