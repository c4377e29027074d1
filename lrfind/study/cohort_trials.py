"""--trials-at-once K: the trial Optuna asks for and up to K - 1 more, trained together as a cohort.

Optuna's optimize loop runs one objective call at a time. With K > 1 that call (the "leader") asks
the study for up to K - 1 more trials (never more than the study still needs, counting every
worker's running trials), plans all of them, trains them together (lrfind.study.trial_training:
one batched forward through the shared model per step), then scores and records each. The extra
trials are told here exactly as Optuna's own loop tells a trial (a value, PRUNED, or FAIL with its
reason), with heartbeats while they run and the study's callbacks after each; the leader's outcome
goes back to Optuna as the call's own. Ctrl-C or a bug fails every trial of the cohort, as Optuna
fails the one it runs; a bug is raised once all are told.

Sampling K trials before any of them ends is what Optuna's batch optimisation (ask several, then
tell) does; TPE and GP samplers then propose from the trials finished so far.
"""

from __future__ import annotations

import copy
import gc
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from lrfind.study.objective import TrialFailed, TrialObjective, job_outcome
from lrfind.study.study_end import finished_trials
from lrfind.study.trial_training import train_trials

@dataclass
class _Outcome:
    value: Any = None  # the objective value(s)
    error: Optional[BaseException] = None


class CohortObjective:
    """Optuna objective: trains the trial it is given with up to `together - 1` more, asked here."""

    def __init__(self, objective: TrialObjective, together: int, n_trials: int, callbacks: Sequence = ()):
        self.objective, self.together, self.n_trials = objective, together, n_trials
        self.callbacks = list(callbacks)  # the study's, run after each extra trial as Optuna runs them after its own

    def __call__(self, leader):
        import optuna
        from optuna.storages._heartbeat import get_heartbeat_thread

        study = leader.study
        extra = [study.ask() for _ in range(self._room(study))]
        with ExitStack() as heartbeats:
            for trial in extra:
                heartbeats.enter_context(get_heartbeat_thread(trial._trial_id, study._storage))
            try:
                outcomes = self._run([leader] + extra)
            except BaseException as err:  # Ctrl-C, a storage error: the whole cohort failed, none told yet
                for trial in extra:
                    _tell(study, trial, _Outcome(error=err))
                raise
        bug = None
        for trial, outcome in zip(extra, outcomes[1:]):
            _tell(study, trial, outcome)
            if outcome.error is not None and not isinstance(outcome.error, (TrialFailed, optuna.TrialPruned)):
                bug = bug or outcome.error
            self._after(study, trial)
        if bug is not None:
            raise bug
        if outcomes[0].error is not None:
            raise outcomes[0].error
        return outcomes[0].value

    def _room(self, study) -> int:
        """How many more trials to ask: the study's remaining need, less every worker's running trials."""
        from optuna.trial import TrialState

        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))  # the leader among them
        return max(0, min(self.together - 1, self.n_trials - finished_trials(study) - running))

    def _run(self, trials: list) -> list[_Outcome]:
        """Plan every trial, train those without a twin together, then score and record each."""
        planned, outcomes = [], []
        for trial in trials:
            try:
                planned.append(self.objective.planned(trial))
            except Exception as err:  # noqa: BLE001 - that trial's outcome
                planned.append(err)
        jobs = {i: self.objective.job(p) for i, p in enumerate(planned)
                if not isinstance(p, Exception) and p.twin_value is None}
        train_trials(self.objective.ctx, list(jobs.values()), together=self.together)
        for i, p in enumerate(planned):
            if isinstance(p, Exception):
                outcomes.append(_Outcome(error=p))
            elif i not in jobs:
                outcomes.append(_Outcome(value=p.twin_value))
            else:
                try:
                    outcomes.append(_Outcome(value=self.objective.completed(p, lambda job=jobs[i]: job_outcome(job))))
                except Exception as err:  # noqa: BLE001 - that trial's outcome, told by the caller
                    outcomes.append(_Outcome(error=err))
        return outcomes

    def _after(self, study, trial) -> None:
        gc.collect()
        frozen = study._storage.get_trial(trial._trial_id)
        for callback in self.callbacks:
            callback(study, copy.deepcopy(frozen))


def _tell(study, trial, outcome: _Outcome) -> None:
    """Tell the study an extra trial's outcome, and log it, as Optuna's optimize loop does its own."""
    import optuna
    from optuna.study._optimize import _log_failed_trial
    from optuna.study._tell import _tell_with_warning
    from optuna.trial import TrialState

    if isinstance(outcome.error, optuna.TrialPruned):
        state, value = TrialState.PRUNED, None
    elif outcome.error is not None:
        state, value = TrialState.FAIL, None
    else:
        state, value = None, outcome.value
    updated, values, warning = _tell_with_warning(study, trial, value_or_values=value, state=state,
                                                  skip_if_finished=True, suppress_warning=True)
    if updated == TrialState.COMPLETE:
        study._log_completed_trial(values, trial.number, trial.params)
    elif updated == TrialState.PRUNED:
        optuna.logging.get_logger("optuna.study._optimize").info(f"Trial {trial.number} pruned. {outcome.error}")
    elif outcome.error is not None or warning is not None:
        error = outcome.error
        _log_failed_trial(trial.number, trial.params, repr(error) if error is not None else warning,
                          exc_info=(type(error), error, error.__traceback__) if error is not None else None)
