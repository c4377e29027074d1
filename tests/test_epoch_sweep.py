"""Epochs read off one constant-lr trial (lrfind.study.epoch_sweep), the probe's point as the first
trial, and completed twins reused: pure functions on tables, then studies on the tiny model."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from lrfind.study.epoch_sweep import (best_epoch, boundary_steps, epoch_counts, epoch_losses, sweeps,
                                      with_swept_epoch)
from lrfind.artifacts.probe_report import ProbeReport, read_probe_report
from probe_reports import probe_with_lr
from test_study import probe_report, study_config, trials  # noqa: F401  (the module-scoped probe fixture)

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("mode, scheduler, counts, expected", [
    ("sweep", "constant", [1, 2, 3], True),
    ("sweep", "cosine", [1, 2, 3], False),  # the lr at a step depends on the run's length
    ("sweep", "constant_with_warmup", [1, 2], False),  # warmup is a share of the run's steps
    ("sample", "constant", [1, 2, 3], False),
    ("sweep", "constant", [3], False),  # nothing to sweep
])
def test_which_trials_sweep(mode, scheduler, counts, expected):
    assert sweeps(mode, scheduler, counts) is expected


def test_epoch_counts_of_choices_and_ranges():
    assert epoch_counts([3, 1, 2, 3], None) == [1, 2, 3]
    assert epoch_counts(None, (6, 12)) == [6, 7, 8, 9, 10, 11, 12]
    assert epoch_counts(None, (2, 10), step=4) == [2, 6, 10]


def test_boundary_steps_scale_and_collisions_keep_fewer_epochs():
    assert boundary_steps([1, 2, 3], lambda e: round(e * 40 / 3)) == {1: 13, 2: 27, 3: 40}
    # a budget so small that 1 and 2 epochs land on the same step: 1 epoch stands for it
    assert boundary_steps([3, 2, 1], lambda e: {1: 1, 2: 1, 3: 2}[e]) == {1: 1, 3: 2}
    assert boundary_steps([1], lambda e: 0) == {1: 1}  # never step 0


@pytest.mark.parametrize("history, expected", [
    ([(10, 0.9), (13, 0.8), (20, 0.7), (27, 0.75), (30, 0.6), (40, 0.85)], (2, 0.75)),  # mid-epoch 0.6 is no result
    ([(13, 0.8), (27, 0.7), (40, 0.6)], (3, 0.6)),  # still improving: the most epochs
    ([(13, 0.5), (27, 0.7), (40, 0.9)], (1, 0.5)),  # overtrained after the first epoch
    ([(13, 0.7), (27, 0.7), (40, 0.7)], (1, 0.7)),  # a tie keeps the fewer epochs
    ([(13, NAN), (27, 0.9), (40, INF)], (2, 0.9)),  # non-finite losses never win
    ([(13, NAN), (40, INF)], None),
    ([(10, 0.5), (20, 0.4)], None),  # no boundary reached
    ([], None),
    ([(13, 0.8), (40, 0.75)], (3, 0.75)),  # pruned or cut between: the boundaries it has
])
def test_best_epoch_table(history, expected):
    assert best_epoch(history, {1: 13, 2: 27, 3: 40}) == expected


def test_epoch_losses_and_params_with_the_swept_epoch():
    history = [(10, 0.9), (13, 0.8), (27, 0.7)]
    assert epoch_losses(history, {1: 13, 2: 27, 3: 40}) == {"1": 0.8, "2": 0.7}
    assert with_swept_epoch({"network_dim": 4}, {"best_epoch": 2}) == {"network_dim": 4, "epochs": 2}
    assert with_swept_epoch({"epochs": 3}, {"best_epoch": 2}) == {"epochs": 3}  # a sampled trial's own
    assert with_swept_epoch({"network_dim": 4}, {}) == {"network_dim": 4}


def test_plan_of_a_swept_trial_validates_where_shorter_trials_end():
    from lrfind.study.space import load_space
    from lrfind.study.trial_params import TrialParams
    from lrfind.study.stats import ConceptStats, DatasetStats
    from lrfind.study.trial_values import plan_trial

    space = load_space("tiny")  # epochs 1..3, 40-step longest trial
    stats = DatasetStats("d", (ConceptStats("10_a a", "a a", 10, (((64, 64), 30),)),), ())
    probe = probe_with_lr(1e-4, 8, 8)
    params = TrialParams(4, 1.0, 3, 2, 1.0, "AdamW", "constant")
    swept = plan_trial(params, probe, space, stats, epoch_mode="sweep")
    shorter = [plan_trial(TrialParams(4, 1.0, e, 2, 1.0, "AdamW", "constant"), probe, space, stats).trial_steps
               for e in (1, 2, 3)]
    assert swept.epoch_boundaries == {1: 13, 2: 27, 3: 40} and shorter == [13, 27, 40]
    assert sorted(swept.validation.at_steps) == [10, 13, 27, 40]  # every 10 steps before the first
    assert swept.validation.every_n_steps is None
    assert "validate_at_steps" not in swept.train_values  # plan data, not a training option
    assert plan_trial(params, probe, space, stats).epoch_boundaries == {}  # epoch_mode sample
    cosine = plan_trial(TrialParams(4, 1.0, 3, 2, 1.0, "AdamW", "cosine"), probe, space, stats, "sweep")
    assert cosine.epoch_boundaries == {} and not cosine.validation.at_steps


def test_suggest_skips_epochs_only_for_swept_schedulers():
    from lrfind.study.space import load_space
    from lrfind.study.trial_params import suggest

    space = load_space("tiny")
    base = {"network_dim": 4, "network_alpha_fraction": 1.0, "repeats": 1, "lr_multiplier": 1.0, "optimizer": "AdamW",
            "network_type": "lora"}
    swept = suggest(optuna.trial.FixedTrial({**base, "lr_scheduler": "constant"}), space, "sweep")
    assert swept.epochs == 3  # the space's most; no `epochs` parameter asked for
    with pytest.raises(ValueError):  # FixedTrial: a cosine trial must sample epochs
        suggest(optuna.trial.FixedTrial({**base, "lr_scheduler": "cosine"}), space, "sweep")
    assert suggest(optuna.trial.FixedTrial({**base, "lr_scheduler": "constant", "epochs": 2}), space).epochs == 2


def test_probe_point_takes_what_the_space_allows():
    from lrfind.study.probe_point import probe_point
    from lrfind.study.space import load_space

    tiny = load_space("tiny")  # dims 4/8, alpha fraction 0.5/1, lr multiplier range 0.5..2
    point = probe_point(tiny, ProbeReport(network_dim=8, network_alpha=4.0))
    assert point == {"lr_multiplier": 1.0, "optimizer": "AdamW", "lr_scheduler": "constant",
                     "network_type": "lora", "network_dim": 8, "network_alpha_fraction": 0.5}
    # dim 16 and alpha 2/16 are not choices here: the sampler picks those
    assert probe_point(tiny, ProbeReport(network_dim=16, network_alpha=2)) == {
        "lr_multiplier": 1.0, "optimizer": "AdamW", "lr_scheduler": "constant", "network_type": "lora"}
    # a probe of a LoHa: its point is a LoHa trial (tiny searches loha); lycoris_locon is not a choice
    loha = {"network_module": "lycoris.kohya", "network_args": {"algo": "loha"}}
    assert probe_point(tiny, ProbeReport(network_dim=8, network_alpha=8, **loha))["network_type"] == "loha"
    assert "network_type" not in probe_point(tiny, ProbeReport(network_module="lycoris.kohya",
                                                               network_args={"algo": "locon"}))
    assert probe_point(tiny, ProbeReport(network_dim=None, network_alpha=None))["lr_multiplier"] == 1.0


SWEEP_SPACE = """\
description = "epoch sweep test: one point, 1..3 epochs"
network_dim = [4]
network_alpha_fraction = [1.0]
lr_multiplier = [1.0]
epochs = [1, 2, 3]
optimizer = ["AdamW"]
lr_scheduler = ["constant"]

[fixed]
resolution = 64
train_batch_size = 1
network_train_unet_only = true

[budget]
trial_budget_steps = 12
eval_every_steps = 5
"""


def test_a_swept_trial_gives_each_shorter_trials_result_exactly(example_dataset, tmp_path, probe_report):
    from lrfind.study.runner import open_study, run_study

    space = tmp_path / "sweep.toml"
    space.write_text(SWEEP_SPACE, encoding="utf-8")
    common = dict(space=str(space), score="loss", trial_budget=None)
    swept_cfg = study_config(example_dataset, tmp_path, probe_report, name="swept", n_trials=2, **common)
    outcome = run_study(swept_cfg)
    _, (swept, twin) = trials(swept_cfg)
    assert "epochs" not in swept.params and swept.user_attrs["steps_done"] == 12
    losses = swept.user_attrs["epoch_val_losses"]
    assert list(losses) == ["1", "2", "3"]
    drifts = {int(e): d for e, d in swept.user_attrs["epoch_drifts"].items()}
    assert list(drifts) == [1, 2, 3] and list(swept.user_attrs["epoch_train_losses"]) == ["1", "2", "3"]
    assert swept.user_attrs["diagnosis"].startswith(("underfits", "fits", "overfits", "burned"))
    best = str(best_epoch([(int(e), v) for e, v in losses.items()], {int(e): int(e) for e in losses}, drifts)[0])
    assert swept.user_attrs["best_epoch"] == int(best) and swept.user_attrs["val_loss"] == losses[best]
    assert swept.value == pytest.approx(swept.user_attrs["val_loss_ratio"])  # loss-only objective
    assert [s for s, _ in swept.user_attrs["val_history"]] == [4, 8, 12]  # the boundaries (first before step 5)
    assert outcome.recommendation.epochs == int(best) and "Epochs:" in outcome.summary
    # the one-point space's second trial is the first one's twin: its result, no training
    assert twin.user_attrs["duplicate_of"] == swept.number and twin.user_attrs["steps_done"] == 0
    assert twin.value == swept.value

    sampled_cfg = study_config(example_dataset, tmp_path, probe_report, name="sampled", n_trials=2,
                               epoch_mode="sample", **common)
    study = open_study(sampled_cfg, ["minimize"])
    for epochs in (1, 2):
        study.enqueue_trial({"epochs": epochs})
    run_study(sampled_cfg)
    _, sampled = trials(sampled_cfg, states=(TrialState.COMPLETE,))
    for trial in sampled:  # the 1- and 2-epoch trials end where the swept trial passed through
        assert trial.user_attrs["val_loss"] == pytest.approx(losses[str(trial.params["epochs"])], rel=1e-6)
        assert trial.user_attrs["steps_done"] < 12 and "epoch_val_losses" not in trial.user_attrs
        # and the drift the swept trial measured at that boundary is the shorter trial's own
        epochs = str(trial.params["epochs"])
        assert trial.user_attrs["drift"] == pytest.approx(swept.user_attrs["epoch_drifts"][epochs], rel=1e-6)


def test_a_new_study_starts_at_the_probe_point(example_dataset, tmp_path, probe_report, capsys):
    from lrfind.study.probe_point import probe_point
    from lrfind.study.runner import run_study
    from lrfind.study.space import load_space

    cfg = study_config(example_dataset, tmp_path, probe_report, n_trials=2, score="loss")
    lines = []
    run_study(cfg, progress=lambda text, transient: lines.append(text) if not transient else None)
    assert capsys.readouterr().out == ""  # library code does not print; its lines go to `progress`
    assert any(line.endswith("0/2 trials finished; running") for line in lines), lines
    study, all_trials = trials(cfg)
    first = all_trials[0]
    point = probe_point(load_space("tiny"), read_probe_report(probe_report))
    assert point and {k: first.params[k] for k in point} == point
    assert study.user_attrs["probe_point_enqueued"] is True
    run_study(cfg.model_copy(update={"n_trials": 3}))  # resuming enqueues nothing more
    _, again = trials(cfg)
    assert sum(all(t.params.get(k) == v for k, v in point.items()) for t in again) >= 1
    assert not [t for t in again if t.state == TrialState.WAITING]


class _AlwaysPrune:
    def __init__(self):
        self.reports = []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return True


@pytest.mark.parametrize("best_so_far, reported", [(False, [0.5, 0.25, 0.75]), (True, [0.5, 0.25, 0.25])])
def test_reporter_reports_lowest_so_far_for_swept_trials_and_keeps_a_finished_trial(best_so_far, reported):
    from types import SimpleNamespace

    from lrfind.study.pruning import OptunaReporter

    trial = _AlwaysPrune()
    reporter = OptunaReporter(trial, baseline_val_loss=2.0, best_so_far=best_so_far)
    for step, loss in ((4, 1.0), (8, 0.5)):
        with pytest.raises(optuna.TrialPruned):  # mid-run: pruned when the pruner says so
            reporter.on_validation(SimpleNamespace(step=step, total_steps=12, val_loss=loss))
    reporter.on_validation(SimpleNamespace(step=12, total_steps=12, val_loss=1.5))  # finished: kept
    assert [v for _, v in trial.reports] == reported


def test_auto_sampler_is_gp_then_tpe_one_choice_per_trial():
    from lrfind.study.samplers import SAMPLERS, GpThenTpe, make_sampler

    assert set(SAMPLERS) == {"auto", "gp", "tpe"}
    assert isinstance(make_sampler("gp", 0, True), optuna.samplers.GPSampler)
    assert isinstance(make_sampler("tpe", 0, True), optuna.samplers.TPESampler)

    used = []

    class Spy(optuna.samplers.RandomSampler):
        def __init__(self, name):
            super().__init__(seed=0)
            self.name = name

        def sample_independent(self, study, trial, name, distribution):
            used.append((trial.number, self.name))
            return super().sample_independent(study, trial, name, distribution)

    study = optuna.create_study(sampler=GpThenTpe(Spy("gp"), Spy("tpe"), switch_at=2))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("y", 0, 3), n_trials=4)
    assert used == [(0, "gp"), (0, "gp"), (1, "gp"), (1, "gp"), (2, "tpe"), (2, "tpe"), (3, "tpe"), (3, "tpe")]
    assert isinstance(make_sampler("auto", 0, False), GpThenTpe)


def test_a_swept_trial_that_diverges_keeps_the_epochs_it_reached(example_dataset, tmp_path, probe_report,
                                                                 monkeypatch):
    from lrfind.errors import TrainingStopped
    from lrfind.study.runner import run_study
    from lrfind.training import loop

    real_step, calls = loop._micro_step, {"n": 0}

    def diverging_step(*args):
        calls["n"] += 1
        if calls["n"] == 10:  # step 10 of 12: after the boundaries at steps 4 and 8
            raise TrainingStopped("loss became nan (not finite)")
        return real_step(*args)

    monkeypatch.setattr(loop, "_micro_step", diverging_step)
    space = tmp_path / "sweep.toml"
    space.write_text(SWEEP_SPACE, encoding="utf-8")
    cfg = study_config(example_dataset, tmp_path, probe_report, name="nan", n_trials=1, space=str(space),
                       score="loss", trial_budget=None)
    run_study(cfg)
    _, (trial,) = trials(cfg)
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["stopped_early"].startswith("at step 9: loss")
    assert list(trial.user_attrs["epoch_val_losses"]) == ["1", "2"] and trial.user_attrs["best_epoch"] in (1, 2)

    calls["n"] = 0  # epochs sampled: the same divergence fails the trial, as before
    sampled = study_config(example_dataset, tmp_path, probe_report, name="nan-sampled", n_trials=1,
                           space=str(space), score="loss", trial_budget=None, epoch_mode="sample")
    from lrfind.study.runner import open_study

    open_study(sampled, ["minimize"]).enqueue_trial({"epochs": 3})  # 12 steps: it reaches step 10
    run_study(sampled)  # the failed trial does not count: a second one runs (and no longer diverges)
    _, (failed, retried) = trials(sampled)
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"].startswith("loss became nan")
    assert retried.state == TrialState.COMPLETE
