"""`lrfind study` on the tiny model: trials, artifacts, resume, failures, dead-worker recovery."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from lrfind.study.config import StudyConfig, parse_duration


@pytest.fixture(scope="module")
def probe_report(example_dataset, tmp_path_factory, tiny, feature_store):
    """One probe for every study in this module (each study copies it instead of probing again)."""
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.probe import run_probe

    out = tmp_path_factory.mktemp("probe")
    run_probe(ProbeConfig(dataset={"train_dir": example_dataset, "resolution": 64, "batch_size": 2}, steps=40, out=out,
                          progress=False),
              components=tiny, store=feature_store)
    return out / "probe.json"


def study_config(example_dataset, tmp_path, probe_report, name="s", **overrides) -> StudyConfig:
    out = tmp_path / "studies" / name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(probe_report, out / "probe.json")
    values = dict(dataset={"train_dir": example_dataset}, name=name, space="tiny", n_trials=3, trial_budget=12, out=out,
                  progress=False, heartbeat_interval=1, grace_period=2)
    values.update(overrides)
    return StudyConfig(**values)


def trials(cfg, states=None):
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    return study, study.get_trials(states=states)


def test_study_runs_trials_and_writes_artifacts_and_recommendation(example_dataset, tmp_path, probe_report):
    from lrfind.study.runner import run_study

    cfg = study_config(example_dataset, tmp_path, probe_report)
    outcome = run_study(cfg)
    study, all_trials = trials(cfg)
    finished = [t for t in all_trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3 and not [t for t in all_trials if t.state == TrialState.RUNNING]
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    for t in complete:
        folder = cfg.out_dir() / "trials" / str(t.number)
        assert (folder / "lora.safetensors").is_file() and (folder / "metrics.json").is_file()
        assert len(list((folder / "samples").glob("*.png"))) == len(t.user_attrs["samples"]) >= 1
        assert -1 <= t.user_attrs["clip_i"] <= 1 and t.user_attrs["val_loss"] > 0
        assert t.intermediate_values  # reported to the pruner
    assert {"probe", "baseline_val_loss", "dataset_stats", "space", "environment"} <= set(study.user_attrs)
    assert study.user_attrs["clip_calibrated"] is False
    rec = json.loads((cfg.out_dir() / "recommendation.json").read_text())
    assert rec["trial_number"] in [t.number for t in complete]
    assert "repeats" in outcome.summary.lower() and "steps" in outcome.summary


def test_rerun_resumes_without_losing_trials(example_dataset, tmp_path, probe_report):
    from lrfind.study.runner import run_study

    cfg = study_config(example_dataset, tmp_path, probe_report, n_trials=2, score="loss")
    run_study(cfg)
    _, first = trials(cfg)
    run_study(cfg.model_copy(update={"n_trials": 3}))
    _, second = trials(cfg)
    assert [(t.number, t.value) for t in first] == [(t.number, t.value) for t in second[: len(first)]]
    assert len([t for t in second if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 3
    run_study(cfg.model_copy(update={"n_trials": 3}))  # already done: runs nothing more
    _, third = trials(cfg)
    assert len(third) == len(second)


def test_trial_of_a_dead_local_worker_is_failed_and_retried_at_once(example_dataset, tmp_path, probe_report):
    from lrfind.study.runner import run_study
    from lrfind.study.storage import WORKER_ATTR, process_start_time, worker_identity

    cfg = study_config(example_dataset, tmp_path, probe_report, n_trials=1, score="loss", grace_period=3600)
    run_study(cfg)  # creates the study
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    params = study.trials[0].params
    study.enqueue_trial(params)
    trial = study.ask()  # RUNNING, as a worker killed with -9 leaves it
    worker = dict(worker_identity(), pid=dead.pid, started=process_start_time(dead.pid) or 1.0)
    trial.set_user_attr(WORKER_ATTR, worker)
    outcome = run_study(cfg.model_copy(update={"n_trials": 2}))
    _, after = trials(cfg)
    stale = after[trial.number]
    assert stale.state == TrialState.FAIL and f"pid {dead.pid} died" in stale.user_attrs["fail_reason"]
    assert not [t for t in after if t.state == TrialState.RUNNING]
    retried = [t for t in after if t.number > trial.number and t.params == params]
    assert retried and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert "fail_reason" not in retried[0].user_attrs  # the dead attempt's reason stays on it alone
    assert outcome.recommendation is not None


def test_nan_and_oom_trials_fail_with_reasons_and_the_study_goes_on(example_dataset, tmp_path, probe_report, monkeypatch):
    from lrfind.errors import TrainingStopped
    from lrfind.study import objective
    from lrfind.study.runner import run_study

    real_train = objective.TrialObjective._train
    calls = {"n": 0}

    def flaky_train(self, planned):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TrainingStopped("loss became nan (not finite)")
        if calls["n"] == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_train(self, planned)

    monkeypatch.setattr(objective.TrialObjective, "_train", flaky_train)
    cfg = study_config(example_dataset, tmp_path, probe_report, n_trials=2, score="loss")
    run_study(cfg)
    _, all_trials = trials(cfg)
    failed = [t for t in all_trials if t.state == TrialState.FAIL]
    assert [t.user_attrs["fail_reason"][:10] for t in failed] == ["loss becam", "out of mem"]
    assert len([t for t in all_trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 2


def test_a_diverged_trial_fails_with_its_step_and_lr_and_the_study_goes_on(example_dataset, tmp_path, probe_report,
                                                                              monkeypatch, caplog):
    from lrfind.study import objective
    from lrfind.study.runner import run_study

    real_train = objective.TrialObjective._train
    calls = {"n": 0}

    def first_trial_at_a_huge_lr(self, planned):
        calls["n"] += 1
        if calls["n"] == 1:  # the real loop diverges (step 1 still has a finite loss)
            planned.plan.train_values.update(learning_rate=1e30, unet_lr=1e30)
        return real_train(self, planned)

    monkeypatch.setattr(objective.TrialObjective, "_train", first_trial_at_a_huge_lr)
    cfg = study_config(example_dataset, tmp_path, probe_report, n_trials=2, score="loss")
    run_study(cfg)
    _, all_trials = trials(cfg)
    [failed] = [t for t in all_trials if t.state == TrialState.FAIL]
    assert failed.number == 0 and "diverged at step 2" in failed.user_attrs["fail_reason"]
    assert "lr 1e+30" in failed.user_attrs["fail_reason"]
    assert "Traceback" not in caplog.text and "training diverged at step 2" in caplog.text
    assert len([t for t in all_trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 2


def test_a_bug_in_a_trial_is_not_swallowed(example_dataset, tmp_path, probe_report, monkeypatch):
    from lrfind.study import objective
    from lrfind.study.runner import run_study

    monkeypatch.setattr(objective.TrialObjective, "_train", lambda *a: (_ for _ in ()).throw(ValueError("bug")))
    with pytest.raises(ValueError, match="bug"):
        run_study(study_config(example_dataset, tmp_path, probe_report, score="loss"))


def test_ctrl_c_marks_the_trial_and_the_study_resumes(example_dataset, tmp_path, probe_report, monkeypatch, capsys):
    from lrfind.study import objective
    from lrfind.study.runner import run_study

    cfg = study_config(example_dataset, tmp_path, probe_report, n_trials=1, score="loss")
    real_train = objective.TrialObjective._train

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(objective.TrialObjective, "_train", interrupted)
    with pytest.raises(KeyboardInterrupt, match="Resume with the same command"):
        run_study(cfg)
    _, after = trials(cfg)
    assert [t.state for t in after] == [TrialState.FAIL]
    monkeypatch.setattr(objective.TrialObjective, "_train", real_train)
    run_study(cfg)
    _, resumed = trials(cfg)
    assert [t.state for t in resumed][0] == TrialState.FAIL and len(resumed) == 2


def test_ctrl_c_in_a_trial_prints_one_line_and_no_traceback(example_dataset, tmp_path, probe_report, monkeypatch,
                                                            capsys, caplog):
    import logging

    from lrfind.cli import main
    from lrfind.study import objective

    cfg = study_config(example_dataset, tmp_path, probe_report, n_trials=1, score="loss")
    monkeypatch.setattr(objective.TrialObjective, "_train", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with caplog.at_level(logging.INFO):
        rc = main(["study", str(example_dataset), "--name", cfg.name, "--space", "tiny", "--out", str(cfg.out_dir()),
                   "--trial-budget", "12", "--score", "loss", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 130 and len(err) == 1 and "Resume with the same command" in err[0]
    assert "Traceback" not in caplog.text and "KeyboardInterrupt" not in caplog.text
    assert [t.state for t in trials(cfg)[1]] == [TrialState.FAIL]  # still marked, as before


def test_changed_space_is_refused_on_resume(example_dataset, tmp_path, probe_report):
    from lrfind.errors import LrfindError
    from lrfind.study.runner import run_study

    cfg = study_config(example_dataset, tmp_path, probe_report, n_trials=1, score="loss")
    run_study(cfg)
    with pytest.raises(LrfindError, match="same --space"):
        run_study(cfg.model_copy(update={"space": "character"}))


def test_durations():  # password masking: tests/test_secrets.py
    assert parse_duration("8h") == 28800 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_real_model_without_clip_asks_for_clip_or_loss(tmp_path, example_dataset, probe_report, capsys):
    from lrfind.cli import main

    rc = main(["study", str(example_dataset), "--name", "x", "--model", str(tmp_path / "nomodel.safetensors"),
               "--out", str(tmp_path / "x")])
    assert rc == 2 and "nomodel.safetensors" in capsys.readouterr().err


def test_study_database_opens_in_optuna_dashboard(example_dataset, tmp_path, probe_report):
    """optuna-dashboard's own WSGI app serves the study: its list, its trials, our attributes."""
    import io
    import json as json_module

    from optuna_dashboard import wsgi

    from lrfind.study.runner import run_study

    cfg = study_config(example_dataset, tmp_path, probe_report, n_trials=2, score="loss")
    run_study(cfg)
    app = wsgi(cfg.storage_url())

    def get(path: str):
        status = {}
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "8080", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http",
                   "wsgi.errors": io.StringIO(), "SERVER_PROTOCOL": "HTTP/1.1"}
        body = b"".join(app(environ, lambda s, headers, exc=None: status.setdefault("code", s)))
        assert status["code"].startswith("200"), (path, status, body[:300])
        return json_module.loads(body)

    studies = get("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [cfg.name]
    detail = get(f"/api/studies/{studies[0]['study_id']}")
    assert len(detail["trials"]) >= 2 and detail["trials"][0]["params"]
    assert {a["key"] for a in detail["user_attrs"]} >= {"probe", "baseline_val_loss", "space"}


def test_hyperband_rungs_come_from_the_space_budget():
    from lrfind.study.pruning import make_pruner
    from lrfind.study.space import load_space

    budget = load_space("tiny").budget
    pruner = make_pruner("hyperband", budget)
    assert pruner._min_resource == budget.eval_every_steps  # the first report, not step 1
    assert pruner._max_resource == budget.trial_budget_steps  # known before any trial: same brackets everywhere


def test_trial_seeds_and_sampler_seeds():
    from lrfind.study.objective import trial_seed
    from lrfind.study.runner import sampler_seed

    same = StudyConfig(dataset={"train_dir": "."}, name="s", seed=7)
    assert [trial_seed(same, n) for n in (0, 1, 5)] == [7, 7, 7]  # paired comparison by default
    per_trial = same.model_copy(update={"trial_seed": "per-trial"})
    assert [trial_seed(per_trial, n) for n in (0, 1, 5)] == [7, 8, 12]
    assert sampler_seed(7) == sampler_seed(7) and sampler_seed(7) != sampler_seed(8)
