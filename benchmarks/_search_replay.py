"""search_efficiency.py's replay: samplers and pruners on the grid's recorded curves, no training.

Each suggested point reports the grid trial's values (val loss / baseline) step by step and stops
where pruned, under the real studies' step budget and stop rule, and ends with the grid trial's
objective value (the loss term plus drift: lrfind.study.scoring). Noise-free (a point always gives
the grid's curve), and seconds for hundreds of studies. A swept trial (lrfind.study.epoch_sweep)
reports the longest run's curve plus each shorter run's final value at the step it ended on (the
loop makes those the same weights; tests/test_epoch_sweep.py checks it), its running minimum, and
ends with the best objective of those epoch counts (TrialObjective picks the epoch by held-out loss,
a longer one that drifts further paying 0.5 %: the replay takes the best objective instead, a
small idealisation). A completed twin (same
params) returns its value for 0 steps, as TrialObjective does.
"""

from __future__ import annotations

import math

PARAMS = ("network_dim", "network_alpha_fraction", "lr_multiplier", "epochs")


def curves_by_key(rows) -> dict:
    """(dim, alpha fraction, lr multiplier, epochs) -> the grid trial's ((step, value), ...)."""
    return {tuple(r.params[p] for p in PARAMS): r.curve for r in rows if r.value is not None}


def values_by_key(rows) -> dict:
    """(dim, alpha fraction, lr multiplier, epochs) -> the grid trial's objective value."""
    return {tuple(r.params[p] for p in PARAMS): r.value for r in rows if r.value is not None}


def swept_curve(curves: dict, values: dict, point: tuple, counts: list[int]) -> tuple[list, dict]:
    """A swept trial at `point` (dim, alpha, lr): (reported curve, {boundary step: objective}). Like
    trial_values._validation_steps: the longest run's validations before the first boundary, then
    the boundaries (the pruner sees the loss term there; the trial ends with an objective)."""
    longest = curves[point + (max(counts),)]
    reported = {curves[point + (e,)][-1][0]: curves[point + (e,)][-1][1] for e in counts}
    objectives = {curves[point + (e,)][-1][0]: values[point + (e,)] for e in counts}
    early = [(step, value) for step, value in longest if step < min(reported)]
    return sorted(set(early) | set(reported.items())), objectives


def make_objective(curves: dict, values: dict, space, counts: list[int], epoch_mode: str, reuse_twins: bool):
    import optuna

    from lrfind.study.trial_params import suggest

    def objective(trial):
        p = suggest(trial, space, epoch_mode)
        if reuse_twins:
            for other in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                if other.params == trial.params:
                    trial.set_user_attr("steps_done", 0)
                    trial.set_user_attr("duplicate_of", other.number)
                    return other.value
        point = (p.network_dim, p.network_alpha_fraction, p.lr_multiplier)
        swept = "epochs" not in trial.params
        curve, boundaries = swept_curve(curves, values, point, counts) if swept else (curves[point + (p.epochs,)], None)
        lowest = math.inf
        for step, value in curve:
            lowest = min(lowest, value)
            trial.set_user_attr("steps_done", step)
            trial.report(lowest if swept else value, step)
            if trial.should_prune() and step < curve[-1][0]:  # as OptunaReporter: a finished trial is kept
                raise optuna.TrialPruned()
        return min(boundaries.values()) if swept else values[point + (p.epochs,)]

    return objective


def replay(setup, ctx, rows, budget_steps: int, longest: int, seeds: int, stopper_class) -> dict:
    """Returns variant -> [(gap of the best completed point, trials, steps), ...] over `seeds`.
    Samplers and pruners are the ones runner.open_study builds, or the older/random baselines."""
    import optuna

    from lrfind.study import runner
    from lrfind.study.probe_point import probe_point
    from lrfind.study.trial_params import space_epoch_counts

    curves, values = curves_by_key(rows), values_by_key(rows)
    grid_best = min(values.values())
    counts = space_epoch_counts(ctx.space)
    first_point = probe_point(ctx.space, ctx.probe)

    def lrfind_parts(label: str, pruner: str, seed: int, sampler: str = "auto"):  # as `lrfind study` builds them
        cfg = setup.config(f"replay-{label}-{seed}", sampler_seed=seed, pruner=pruner, sampler=sampler)
        study = runner.open_study(cfg, ["minimize"], ctx.space.budget)
        return study.sampler, study.pruner

    out = {}
    for seed in range(seeds):
        old_hb = optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
        variants = {  # name -> (sampler, pruner, epoch mode, probe point first, twins reused)
            "lrfind's default: sweep, GP, probe point, twins, Hyperband":
                (*lrfind_parts("hb", "hyperband", seed), "sweep", True, True),
            "the same with multivariate TPE (--sampler tpe)":
                (*lrfind_parts("tpe", "hyperband", seed, "tpe"), "sweep", True, True),
            "the same, no pruning": (*lrfind_parts("none", "none", seed), "sweep", True, True),
            "the same, without the probe point": (*lrfind_parts("np", "hyperband", seed), "sweep", False, True),
            "the same, epochs sampled": (*lrfind_parts("hbs", "hyperband", seed), "sample", True, True),
            "lrfind before 2026-12-01 14:00 (TPE, Hyperband, epochs sampled)":
                (optuna.samplers.TPESampler(seed=seed, n_startup_trials=5), lrfind_parts("hbo", "hyperband", seed)[1],
                 "sample", False, False),
            "Hyperband(min_resource=1, max_resource='auto'), before 2026-12-01 13:00":
                (optuna.samplers.TPESampler(seed=seed, n_startup_trials=5), old_hb, "sample", False, False),
            "random, epochs sampled, no pruning": (optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner(),
                                                   "sample", False, False),
        }
        for name, (sampler, pruner, mode, probe_first, twins) in variants.items():
            study = optuna.create_study(study_name=f"study-s{seed}", sampler=sampler, pruner=pruner)
            if probe_first and first_point:
                study.enqueue_trial(first_point)
            stopper = stopper_class(budget_steps, longest)(10_000)
            study.optimize(make_objective(curves, values, ctx.space, counts, mode, twins), n_trials=10_000,
                           callbacks=[stopper])
            # COMPLETE only: Optuna gives a pruned trial its last reported value, the loss term
            # without drift, which is not an objective value
            done = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            used = sum(t.user_attrs.get("steps_done", 0) for t in study.trials)
            out.setdefault(name, []).append((min(done) / grid_best - 1 if done else math.inf, len(study.trials), used))
    return out
