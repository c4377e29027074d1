"""How a study run by many workers ends: once, at --n-trials finished trials, and every worker
recommends from the same trials.

Counting: finished = COMPLETE + PRUNED (Optuna's MaxTrialsCallback with those two states). A FAIL
gave no result and is not counted: a dead worker's trial is retried, and the retry counts.

Each worker checks the count after each of its trials (runner._StopWhenDone) and again when a trial
starts (EndAwareObjective): a trial that starts once the count is reached is not run (FAIL,
NOT_RUN_ATTR, and a reason); that happens only when a worker asks for its next trial in the same
instant that another finishes the last one. A trial already running when the n-th finished is let
finish, not cancelled (its training is paid for), so a study ends with n + at most (workers - 1)
finished trials; the summary says how many ran over.

At the end each worker waits until no trial of the study is RUNNING (failing dead workers' trials on
the way), fails the retries nobody will run, and only then reads the trials and recommends: every
worker sees the same trials, and recommend() is deterministic, so they agree. Trials that were not
run are left out of the recommendation's counts (their number depends on timing, not on the study).
"""

from __future__ import annotations

import time

from lrfind.study.objective import TrialFailed
from lrfind.study.worker_storage import FAIL_REASON_ATTR, StorageUnavailable, fail_dead_trials

NOT_RUN_ATTR = "not_run"
FINISHED_STATES = ("COMPLETE", "PRUNED")
END_POLL_SECONDS = 1.0
END_WAIT_MARGIN_SECONDS = 60.0


def finished_trials(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


class EndAwareObjective:
    """The trial objective, run only while the study still needs trials; remembers its trial."""

    def __init__(self, objective, n_trials: int):
        self.objective, self.n_trials = objective, n_trials
        self.trial_id = None

    def __call__(self, trial):
        self.trial_id = trial._trial_id
        if finished_trials(trial.study) >= self.n_trials:
            reason = (f"not run: the study already had its {self.n_trials} finished trials when this worker "
                      "started it (it asked for a trial as another worker finished the last one)")
            trial.set_user_attr(NOT_RUN_ATTR, True)
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            raise TrialFailed(reason)
        return self.objective(trial)


def optimize_surviving(study, objective: EndAwareObjective, n_trials: int, timeout, **optimize_args) -> list[int]:
    """study.optimize, carried on when another worker failed this worker's running trial.

    That happens when this worker's heartbeats came later than the grace period (an overloaded
    machine, a slow database): another worker took it for dead. Optuna then raises when this worker
    reports the trial; the study is consistent (the trial is FAIL with its reason and retried), so
    this worker goes on. Returns the numbers of such trials. A storage that gave up raises its
    StorageUnavailable, whatever Optuna's error handling made of it.
    """
    from optuna.exceptions import UpdateFinishedTrialError

    deadline = None if timeout is None else time.monotonic() + timeout
    taken_over = []
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            study.optimize(objective, timeout=remaining, **optimize_args)
            return taken_over
        except Exception as err:
            gave_up = _storage_gave_up(study, err)
            if gave_up is not None:
                raise gave_up from None
            # Optuna's words when it reports a trial that another worker had already failed
            told_finished = isinstance(err, ValueError) and str(err).startswith("Cannot tell a ")
            if not (told_finished or isinstance(err, UpdateFinishedTrialError)):
                raise
            number = _taken_over_trial(study, objective.trial_id)
            if number is None:
                raise
            taken_over.append(number)
            objective.trial_id = None
        if finished_trials(study) >= n_trials or (deadline is not None and time.monotonic() >= deadline):
            return taken_over


def _storage_gave_up(study, err: BaseException):
    seen = err
    while seen is not None:
        if isinstance(seen, StorageUnavailable):
            return seen
        seen = seen.__cause__ or seen.__context__
    return getattr(getattr(study._storage, "_backend", study._storage), "_gave_up", None)


def _taken_over_trial(study, trial_id):
    """This worker's current trial's number, if the storage has it finished by someone else."""
    if trial_id is None:
        return None
    trial = study._storage.get_trial(trial_id)
    return trial.number if trial.state.is_finished() else None


def settle_end(study, n_trials: int, grace_period: int, on_wait=None) -> list[int]:
    """Wait for the study's running trials, fail retries nobody will run; the trials still running
    (empty unless a live worker's trial outran every finished trial twice over)."""
    from optuna.trial import TrialState

    running = _wait_for_running(study, grace_period, on_wait)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        _fail_not_run(study, trial, f"not retried: the study had its {n_trials} finished trials before a "
                                    "worker was free to run this retry")
    return running


def _wait_for_running(study, grace_period: int, on_wait) -> list[int]:
    from optuna.trial import TrialState

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    longest = max((t.duration.total_seconds() for t in finished if t.duration is not None), default=0.0)
    deadline = time.monotonic() + 2 * longest + grace_period + END_WAIT_MARGIN_SECONDS
    told = False
    while True:
        fail_dead_trials(study)
        running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if not running or time.monotonic() > deadline:
            return running
        if on_wait is not None and not told:
            on_wait(running)
            told = True
        time.sleep(END_POLL_SECONDS)


def _fail_not_run(study, trial, reason: str) -> None:
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, NOT_RUN_ATTR, True)
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        pass  # another worker at its end got there first


def counted_trials(trials) -> list:
    """The trials a recommendation is made from: all but those never run (timing, not study)."""
    return [t for t in trials if not t.user_attrs.get(NOT_RUN_ATTR)]


def overrun_note(trials, n_trials: int, still_running: list[int]) -> str:
    """How the end was counted, for the summary (the same text from every worker)."""
    finished = sorted((t for t in trials if t.state.name in FINISHED_STATES), key=_completed_order)
    notes = []
    if len(finished) > n_trials:
        extra = [t.number for t in finished[n_trials:]]
        notes.append(f"{len(finished)} trials finished for --n-trials {n_trials}: {len(extra)} more (trial(s) "
                     f"{', '.join(map(str, sorted(extra)))}), because trials already running on other workers "
                     f"when the last of the {n_trials} needed finished (trial {finished[n_trials - 1].number}) are "
                     "let finish, not cancelled.")
    if still_running:
        notes.append(f"Trial(s) {', '.join(map(str, still_running))} still running when this worker stopped "
                     "waiting: not in this recommendation; rerun the same command after they end to update it.")
    return " ".join(notes)


def _completed_order(trial):
    return (trial.datetime_complete is None, trial.datetime_complete or 0, trial.number)
