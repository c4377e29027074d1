"""The one piece of the training loop that knows Optuna: report and prune on validation."""

from __future__ import annotations


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

        from lrfind.study.scoring import intermediate_value

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
