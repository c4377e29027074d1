"""The one piece of the training loop that knows Optuna: report and prune on validation."""

from __future__ import annotations

from lrfind.study.scoring import intermediate_value
from lrfind.training.plan import ValidationPlan


class OptunaReporter:
    """On each validation: report loss / baseline to the trial and stop the run when pruned.

    Raising optuna.TrialPruned from a callback unwinds the loop; lora_run's cleanup detaches the
    LoRA, so the shared model is clean for the next trial.
    """

    def __init__(self, trial, baseline_val_loss: float, prune: bool = True, best_so_far: bool = False):
        self.trial, self.baseline, self.prune = trial, baseline_val_loss, prune
        # A swept trial (lrfind.study.epoch_sweep) keeps its best epoch, so what it has achieved by
        # a step is its lowest loss so far: a trial that peaks early is not pruned for what follows.
        self.best_so_far = best_so_far
        self.lowest = float("inf")
        self.last_step = 0

    def on_validation(self, state) -> None:
        import optuna

        self.last_step = state.step
        if not self.prune:  # multi-objective studies can't report intermediate values
            return
        value = intermediate_value(state.val_loss, self.baseline)
        if self.best_so_far:
            self.lowest = value = min(self.lowest, value)
        self.trial.report(value, state.step)
        # should_prune also records the rung's value for Hyperband, so it runs at the last step too;
        # but a trial that has finished training is kept: pruning it then saves nothing, loses its result.
        if self.trial.should_prune() and state.step < state.total_steps:
            raise optuna.TrialPruned(f"pruned at step {state.step} of {state.total_steps}")

    def on_step_end(self, state) -> None:
        self.last_step = state.step


HYPERBAND_REDUCTION = 3  # make_pruner's reduction factor: rungs at eval_every_steps * 3**k


def make_pruner(kind: str, budget=None):
    """The pruner; its resource is optimizer steps, reported every budget.eval_every_steps.

    Hyperband's smallest rung is the first report (min_resource 1 with reports every N steps put
    rungs 1, 3, 9, ... < N all on that first report: a trial had to be in the top 1/27 or so at
    its first validation to live), and its largest the space's longest trial, known before any
    trial ran: "auto" guessed it from whichever trial completed first, so workers and resumed
    runs could split trials into different brackets.
    """
    import optuna

    first, longest = (budget.eval_every_steps, budget.trial_budget_steps) if budget is not None else (1, "auto")
    return {"hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=first, max_resource=longest,
                                                                reduction_factor=HYPERBAND_REDUCTION),
            "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
            "none": lambda: optuna.pruners.NopPruner()}[kind]()


def used_validation_steps(planned: ValidationPlan, total: int, boundaries: dict, *, pruner: str, prunes: bool,
                          eval_every_steps: int) -> ValidationPlan:
    """The trial's validation plan, cut to the passes whose loss is used (`total`: its steps).

    Each pass costs a UNet forward per (validation image, timestep). Kept: the last step (the
    trial's result), the epoch boundaries of a swept trial (its results), and what the pruner
    reads. Without pruning (--pareto, pruner none) nothing else. Hyperband decides only at the
    first report at or after each rung step, eval_every_steps * 3**k; with reports every
    eval_every_steps that report is the one at the rung step itself, so passes at the steps
    between change no decision. A swept trial's early reports are all kept: it reports its lowest
    loss so far, which any of them may be. The median pruner compares every report: all kept.
    """
    steps = planned.steps_up_to(total)
    results = set(boundaries.values()) | {total}
    if not prunes or pruner == "none":
        keep = results
    elif pruner == "hyperband" and not boundaries:
        rungs, step = set(), eval_every_steps
        while step <= total:
            rungs.add(step)
            step *= HYPERBAND_REDUCTION
        keep = results | (steps & rungs)
    else:
        keep = results | steps
    return ValidationPlan.at(keep)
