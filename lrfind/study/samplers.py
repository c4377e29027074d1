"""The study's Optuna sampler: `--sampler auto|gp|tpe` (a registry of small builders).

auto (default): Optuna's GPSampler (Gaussian-process Bayesian optimisation) for the first
GP_MAX_TRIALS trials, then TPE. With a few dozen trials, each one a training run, GP finds good
points with fewer trials than TPE: in the search-efficiency benchmark's replay (36-point grid,
25 % of its compute, benchmarks/RESULTS.md) it found the grid's best in about 98 % of studies
against about 80 % for multivariate TPE. Its cost per suggestion grows with the cube of the trial
count (measured here, 7 parameters, 2 CPU cores: 0.2 s at 200 trials, 2.5 s at 1000), so a
long many-worker study goes on with TPE, whose cost stays flat. GPSampler handles running trials
of other workers (q-batch expected improvement), so workers do not all propose one point.
Parameters that not every trial has (the epochs of trials that do not sweep them) are sampled by
TPE on its own in both. This switch is the idea of OptunaHub's AutoSampler, which needs a
download at run time; these few lines do not.
"""

from __future__ import annotations

import warnings
from typing import Callable

from optuna.samplers import BaseSampler

GP_MAX_TRIALS = 1000


def _tpe(seed: int, deterministic: bool):
    import optuna

    # multivariate: dim, alpha and lr interact (alpha/dim scales the effective lr); group: trials
    # that sweep epochs have no `epochs` parameter. Optuna marks both experimental.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True, group=True)


def _gp(seed: int, deterministic: bool):
    import optuna

    # deterministic: with one training seed for all trials (--trial-seed same) a point's value is
    # exact, and the GP need not model noise. Three random trials (after the probe's point) start it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=3, deterministic_objective=deterministic,
                                         independent_sampler=_independent(seed), warn_independent_sampling=False)


def _independent(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def _auto(seed: int, deterministic: bool):
    return GpThenTpe(_gp(seed, deterministic), _tpe(seed, deterministic), GP_MAX_TRIALS)


SAMPLERS: dict[str, Callable] = {"auto": _auto, "gp": _gp, "tpe": _tpe}


def make_sampler(kind: str, seed: int, deterministic: bool):
    """The single-objective sampler `kind` (a key of SAMPLERS)."""
    return SAMPLERS[kind](seed, deterministic)


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


class GpThenTpe(BaseSampler):
    """GP while the study has fewer than `switch_at` finished trials, TPE after (see module doc).

    The choice is made once per trial (in before_trial) so that one trial never mixes the two.
    """

    def __init__(self, gp, tpe, switch_at: int):
        self.gp, self.tpe, self.switch_at = gp, tpe, switch_at
        self._chosen: dict[int, object] = {}

    def _pick(self, study):
        return self.gp if _finished(study) < self.switch_at else self.tpe

    def _for(self, study, trial):
        return self._chosen.get(trial._trial_id) or self._pick(study)

    def before_trial(self, study, trial) -> None:
        self._chosen[trial._trial_id] = self._pick(study)
        self._chosen[trial._trial_id].before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(study, trial).after_trial(study, trial, state, values)
        self._chosen.pop(trial._trial_id, None)

    def reseed_rng(self) -> None:
        self.gp.reseed_rng()
        self.tpe.reseed_rng()
