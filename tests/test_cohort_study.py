"""`lrfind study --trials-at-once K` (lrfind.study.cohort_trials): the same trials as one by one,
with the same results, told to Optuna as its own loop tells them; failures stay per trial."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from lrfind.study.probe_point import PROBE_POINT_ATTR

from test_study import probe_report, study_config, trials  # noqa: F401  (the module's probe fixture)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _enqueued_study(cfg, points) -> None:
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url(), direction="minimize")
    study.set_user_attr(PROBE_POINT_ATTR, True)
    for point in points:
        study.enqueue_trial(point)


def _results(cfg) -> dict:
    _, all_trials = trials(cfg)
    return {tuple(sorted(t.params.items())): (t.state, t.value) for t in all_trials}


# Four LoRA points (a cohort) and a LoHa one (trains alone) of the tiny space
POINTS = [dict(network_dim=4, network_alpha_fraction=1.0, epochs=2, repeats=1, lr_multiplier=m, optimizer=o,
               lr_scheduler="constant", network_type="lora")
          for m, o in ((0.5, "AdamW"), (2.0, "AdamW"), (1.0, "Lion"), (1.5, "AdamW"))]
POINTS.append(dict(network_dim=8, network_alpha_fraction=0.5, epochs=1, repeats=2, lr_multiplier=1.0, optimizer="AdamW",
                   lr_scheduler="constant", network_type="loha"))


def test_a_cohort_study_has_the_results_of_the_same_trials_one_by_one(example_dataset, tmp_path, probe_report,
                                                                       monkeypatch):
    from lrfind.study import trial_training
    from lrfind.study.runner import run_study

    cohorts, real_together = [], trial_training._train_together
    monkeypatch.setattr(trial_training, "_train_together",
                        lambda ctx, jobs: cohorts.append([j.trial.number for j in jobs]) or real_together(ctx, jobs))
    results = {}
    for name, together in (("alone", 1), ("together", 3)):
        cfg = study_config(example_dataset, tmp_path, probe_report, name=name, n_trials=len(POINTS), score="loss",
                           pruner="none", trials_at_once=together)
        _enqueued_study(cfg, POINTS)
        run_study(cfg)
        results[name] = _results(cfg)
    # trials 0-2 asked together (the LoHa one is not among them), then 3 and 4 (4 is LoHa: alone)
    assert cohorts == [[0, 1, 2]]
    assert results["alone"].keys() == results["together"].keys() and len(results["alone"]) == len(POINTS)
    for params, (state, value) in results["alone"].items():
        assert state == TrialState.COMPLETE
        assert results["together"][params][0] == state
        assert results["together"][params][1] == pytest.approx(value, rel=1e-4), params


def test_a_cohort_asks_no_more_trials_than_the_study_needs(example_dataset, tmp_path, probe_report):
    from lrfind.study.runner import run_study

    cfg = study_config(example_dataset, tmp_path, probe_report, name="few", n_trials=2, score="loss",
                       pruner="none", trials_at_once=4)
    run_study(cfg)
    _, all_trials = trials(cfg)
    assert len(all_trials) == 2 and all(t.state in FINISHED for t in all_trials)


def test_a_failing_trial_of_a_cohort_fails_alone(example_dataset, tmp_path, probe_report, monkeypatch):
    """A diverging member fails with its reason; the others of its cohort complete."""
    from lrfind.study import objective
    from lrfind.study.runner import run_study

    real_planned = objective.TrialObjective.planned

    def huge_lr_for_trial_1(self, trial):
        planned = real_planned(self, trial)
        if trial.number == 1:
            planned.plan.train_values.update(learning_rate=1e30, unet_lr=1e30)
        return planned

    monkeypatch.setattr(objective.TrialObjective, "planned", huge_lr_for_trial_1)
    cfg = study_config(example_dataset, tmp_path, probe_report, name="fails", n_trials=3, score="loss",
                       pruner="none", trials_at_once=3)
    _enqueued_study(cfg, POINTS[:3])
    run_study(cfg)
    _, all_trials = trials(cfg)
    by_number = {t.number: t for t in all_trials}
    assert by_number[1].state == TrialState.FAIL and "diverged" in by_number[1].user_attrs["fail_reason"]
    assert by_number[0].state == by_number[2].state == TrialState.COMPLETE
    assert len([t for t in all_trials if t.state in FINISHED]) == 3  # a retry replaced the failure


def test_ctrl_c_fails_every_trial_of_the_cohort(example_dataset, tmp_path, probe_report, monkeypatch):
    from lrfind.study import trial_training
    from lrfind.study.runner import run_study

    monkeypatch.setattr(trial_training, "_train_together", lambda ctx, jobs: (_ for _ in ()).throw(KeyboardInterrupt()))
    cfg = study_config(example_dataset, tmp_path, probe_report, name="ctrlc", n_trials=3, score="loss",
                       pruner="none", trials_at_once=3)
    _enqueued_study(cfg, POINTS[:3])
    with pytest.raises(KeyboardInterrupt, match="Resume with the same command"):
        run_study(cfg)
    _, all_trials = trials(cfg)
    assert [t.state for t in all_trials] == [TrialState.FAIL] * 3


def test_a_cohort_out_of_memory_before_its_first_step_trains_its_trials_one_by_one(example_dataset, tmp_path,
                                                                                    probe_report, monkeypatch):
    from lrfind.study import trial_training
    from lrfind.study.runner import run_study

    def out_of_memory(cohort, runs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trial_training, "run_cohort", out_of_memory)
    lines = []
    cfg = study_config(example_dataset, tmp_path, probe_report, name="oom", n_trials=3, score="loss",
                       pruner="none", trials_at_once=3)
    _enqueued_study(cfg, POINTS[:3])
    run_study(cfg, progress=lambda text, transient: lines.append(text))
    _, all_trials = trials(cfg)
    assert [t.state for t in all_trials] == [TrialState.COMPLETE] * 3
    assert any("out of memory together" in line and "one by one" in line for line in lines)


def test_a_study_that_weighs_no_drift_measures_none(example_dataset, tmp_path, probe_report, monkeypatch):
    """[objective] drift = 0: no base predictions, no drift forwards per trial (42 U-Net forwards a
    trial on the example photos: most of a trial's time beyond its steps, benchmarks/RESULTS.md)."""
    from pathlib import Path

    import lrfind.study
    from lrfind.study import trial_curves
    from lrfind.study.runner import run_study

    preset = (Path(lrfind.study.__file__).parent / "presets" / "tiny.toml").read_text()
    assert "\ndrift = 1.0" in preset
    space = tmp_path / "no-drift.toml"
    space.write_text(preset.replace("\ndrift = 1.0", "\ndrift = 0.0"))
    refuse = lambda *a, **k: (_ for _ in ()).throw(AssertionError("drift measured with weight 0"))  # noqa: E731
    monkeypatch.setattr(trial_curves, "measure_drift", refuse)
    monkeypatch.setattr("lrfind.study.runner.study_drift_probe", refuse)
    cfg = study_config(example_dataset, tmp_path, probe_report, name="nodrift", n_trials=2, score="loss",
                       space=str(space), trials_at_once=2)
    run_study(cfg)
    _, all_trials = trials(cfg)
    finished = [t for t in all_trials if t.state in FINISHED]
    assert len(finished) == 2 and not any("drift" in t.user_attrs for t in finished)


def test_the_cli_flag_runs_trials_together_and_refuses_a_bad_value(example_dataset, tmp_path, probe_report, capsys):
    import shutil

    from lrfind.cli import main

    out = tmp_path / "studies" / "cli"
    out.mkdir(parents=True)
    shutil.copy(probe_report, out / "probe.json")
    common = ["study", str(example_dataset), "--name", "cli", "--space", "tiny", "--out", str(out),
              "--trial-budget", "6", "--score", "loss", "--n-trials", "2", "--no-progress"]
    assert main(common + ["--trials-at-once", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trials_at_once" in err[0] and "Traceback" not in err[0]
    assert main(common + ["--trials-at-once", "2"]) == 0
    assert "trials finished; running up to 2 at once" in capsys.readouterr().out
