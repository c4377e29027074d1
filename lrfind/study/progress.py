"""Live status of a study: one line for the study, one per running trial. Nothing here prints.

Everything is read from the study's storage, so `lrfind status NAME` shows the same lines for a
study running in another process or on another machine, without writing to it:
- the study: finished (complete), pruned and failed trials, the best value and its trial, and an
  ETA: the trials still to reach --n-trials at the rate trials have finished (all workers
  together), capped by what is left of --timeout (both kept in the study's RUN_ATTR at start);
- a running trial: its step (the last step it reported a validation loss to the pruner, Optuna's
  intermediate values), that loss, and an ETA at its pace so far.

While a study runs in this process, `TrialProgress` (a training-loop callback) and `StudyProgress`
(an Optuna callback) hand the same kind of lines to a callable, at most one per `interval` seconds
for trial lines (the CLI picks the interval and how to show them: a TTY rewrites one line, logs get
one line per update).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Optional

RUN_ATTR = "run_target"  # {"n_trials": int, "timeout_s": float | None, "started": unix time}


def duration_text(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def _unix(moment: Optional[datetime]) -> Optional[float]:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


@dataclass(frozen=True)
class RunningTrial:
    number: int
    step: Optional[int]  # last step reported to the pruner
    steps_planned: Optional[int]
    loss: Optional[float]
    eta_s: Optional[float]

    def line(self) -> str:
        step = "starting" if self.step is None else f"step {self.step}/{self.steps_planned or '?'}"
        loss = f", val loss {self.loss:.4f}" if self.loss is not None and math.isfinite(self.loss) else ""
        eta = f", ETA {duration_text(self.eta_s)}" if self.eta_s is not None else ""
        return f"trial {self.number}: {step}{loss}{eta}"


@dataclass(frozen=True)
class StudyStatus:
    name: str
    complete: int
    pruned: int
    failed: int
    running: tuple[RunningTrial, ...]
    n_trials: Optional[int]
    best_value: Optional[float]
    best_trial: Optional[int]
    eta_s: Optional[float]

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    def line(self) -> str:
        target = f"/{self.n_trials}" if self.n_trials else ""
        best = (f"; best {self.best_value:.5g} (trial {self.best_trial})" if self.best_value is not None
                else "; no completed trial yet")
        eta = f"; ETA {duration_text(self.eta_s)}" if self.eta_s is not None else ""
        return (f"study {self.name}: {self.finished}{target} finished ({self.complete} complete, {self.pruned} "
                f"pruned, {self.failed} failed), {len(self.running)} running{best}{eta}")

    def lines(self) -> list[str]:
        return [self.line()] + [t.line() for t in self.running]


def _running_trial(trial, now: float) -> RunningTrial:
    values = trial.intermediate_values
    step = max(values) if values else None
    planned = trial.user_attrs.get("steps_planned")
    started = _unix(trial.datetime_start)
    eta = None
    if step and planned and started is not None:
        eta = (now - started) / step * max(0, int(planned) - step)
    return RunningTrial(trial.number, step, planned, values.get(step) if step else None, eta)


def _best(trials) -> tuple[Optional[float], Optional[int]]:
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values and len(t.values) == 1]
    if not complete:
        return None, None
    best = min(complete, key=lambda t: t.values[0])
    return float(best.values[0]), best.number


def _eta(trials, finished: int, target: dict, now: float) -> Optional[float]:
    """Trials left at the finishing rate so far, capped by what is left of the timeout."""
    n_trials, timeout_s, started = target.get("n_trials"), target.get("timeout_s"), target.get("started")
    ends = [_unix(t.datetime_complete) for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    starts = [_unix(t.datetime_start) for t in trials if t.datetime_start is not None]
    eta = None
    if n_trials and finished and starts:
        elapsed = max(e for e in ends if e is not None) - min(starts)
        if elapsed > 0:
            eta = max(0, n_trials - finished) * elapsed / finished
    if timeout_s and started:
        left = max(0.0, float(started) + float(timeout_s) - now)
        eta = left if eta is None else min(eta, left)
    return eta


def study_status(study, now: Optional[float] = None) -> StudyStatus:
    """The status of `study` (an optuna.Study) from its storage; reads only."""
    now = time.time() if now is None else now
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    target = dict(study.user_attrs.get(RUN_ATTR) or {})
    complete, pruned = states.count("COMPLETE"), states.count("PRUNED")
    best_value, best_trial = _best(trials)
    running = tuple(_running_trial(t, now) for t in trials if t.state.name == "RUNNING")
    return StudyStatus(study.study_name, complete, pruned, states.count("FAIL"), running,
                       target.get("n_trials"), best_value, best_trial, _eta(trials, complete + pruned, target, now))


class StudyProgress:
    """Optuna callback: the study's line after each trial."""

    def __init__(self, emit: Callable[[str], None]):
        self.emit = emit

    def __call__(self, study, trial) -> None:
        self.emit(study_status(study).line())


class TrialProgress:
    """Training-loop callback of one trial: its step, training loss and ETA, at most every `interval` s."""

    def __init__(self, number: int, emit: Callable[[str], None], interval: float):
        self.number, self.emit, self.interval = number, emit, interval
        self.started = self.last = time.monotonic()

    def on_step_end(self, state) -> None:
        now = time.monotonic()
        if now - self.last < self.interval and state.step < state.total_steps:
            return
        self.last = now
        eta = (now - self.started) / state.step * (state.total_steps - state.step) if state.step else None
        self.emit(f"trial {self.number}: step {state.step}/{state.total_steps}, loss {state.average_loss:.4f}, "
                  f"ETA {duration_text(eta)}")


def run_target(n_trials: int, timeout_s: Optional[float]) -> dict:
    return {"n_trials": n_trials, "timeout_s": timeout_s, "started": datetime.now(timezone.utc).timestamp()}
