"""Live status lines (issue 18 part 4): the study's and a running trial's, from the storage only;
log output without carriage returns, rate-limited."""

from __future__ import annotations

import io
import time

import optuna
from optuna.distributions import FloatDistribution

from lrfind.cli import main
from lrfind.cli.progress_print import StatusPrinter
from lrfind.study.progress import RUN_ATTR, TrialProgress, run_target, study_status
from lrfind.training.loop import LoopState


def _finished(study, state, value=None):
    study.add_trial(optuna.create_trial(state=state, value=value, params={"x": 0.5},
                                        distributions={"x": FloatDistribution(0, 1)}))


def test_study_line_counts_best_and_eta_and_running_trial_line(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    for state, value in ((optuna.trial.TrialState.COMPLETE, 0.8), (optuna.trial.TrialState.COMPLETE, 0.6),
                         (optuna.trial.TrialState.PRUNED, None), (optuna.trial.TrialState.FAIL, None)):
        _finished(study, state, value)
    study.set_user_attr(RUN_ATTR, run_target(10, 3600.0))
    running = study.ask()
    running.set_user_attr("steps_planned", 40)
    running.report(1.25, 10)
    status = study_status(study, now=time.time() + 5)
    line = status.line()
    assert "3/10 finished (2 complete, 1 pruned, 1 failed), 1 running" in line
    assert "best 0.6 (trial 1)" in line and "ETA" in line
    assert status.running[0].line().startswith(f"trial {running.number}: step 10/40, val loss 1.2500, ETA ")
    assert 15 <= status.running[0].eta_s < 30  # 10 of 40 steps in about 5 s: about 15 s to go
    study.set_user_attr(RUN_ATTR, run_target(10, 60.0))  # the timeout ends first: the ETA is what is left of it
    assert study_status(study).eta_s <= 60

    assert main(["status", "s", "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 0
    assert main(["status", "nothing", "--study-dir", str(tmp_path / "nothing")]) == 2
    assert not (tmp_path / "nothing.db").exists() and not (tmp_path / "nothing.journal").exists()


def test_log_output_has_no_carriage_returns_and_trial_lines_are_rate_limited():
    stream = io.StringIO()  # not a TTY
    printer = StatusPrinter(stream, log_interval_s=60)
    progress = TrialProgress(3, lambda text: printer(text, True), interval=0)
    state = LoopState(total_steps=100, steps_per_epoch=10)
    for step in range(1, 101):
        state.step, state.epoch_losses = step, [0.5]
        progress.on_step_end(state)
    printer("study s: 1/4 finished", False)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("trial 3: step 1/100, loss 0.5000, ETA") and lines[-1] == "study s: 1/4 finished"
    assert len(lines) == 2  # one trial line within the interval, then the study's
