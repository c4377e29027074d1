"""A study trial's training: set up, train (alone, or in a cohort with other trials), keep its LoRA.

`train_trials(ctx, jobs)` trains each job and fills in its `result`: the LoRA kept and the metrics
so far, or the exception that ended it (pruned, diverged, out of memory). With --trials-at-once,
jobs that can train together (lrfind.training.cohort.can_join_cohort, one shared forward's
settings) go through the model as one cohort; the others train alone, one after another. A
trial's callbacks, validation, drift, epoch snapshots and saved file are the same either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lrfind.data.types import with_repeats
from lrfind.errors import TrainingStopped, is_out_of_memory
from lrfind.network import save_lora
from lrfind.study.epoch_sweep import EPOCH_LOSSES_ATTR, SWEPT_EPOCH_ATTR, best_epoch, epoch_losses
from lrfind.study.free_heap import free_memory
from lrfind.study.progress import TrialProgress
from lrfind.study.pruning import OptunaReporter, used_validation_steps
from lrfind.study.trial_config import trial_train_config
from lrfind.study.trial_curves import DriftRecorder, TrainLossRecorder
from lrfind.study.trial_values import plan_trial
from lrfind.training.cohort import CohortMemberSetup, CohortRun, can_join_cohort, lora_cohort, run_cohort
from lrfind.training.loop import LoopState, run_loop
from lrfind.training.metadata import training_metadata
from lrfind.training.setup import lora_run

PROGRESS_EVERY_S = 1.0  # a trial's status line at most this often (the CLI thins it further for logs)


@dataclass
class TrialResult:
    lora_state: dict  # the kohya state dict kept (the best epoch's, for a swept trial)
    metrics: dict


@dataclass
class TrialJob:
    """One trial to train: its Optuna trial, plan, config and, once trained, its result or error."""

    trial: Any
    plan: Any  # lrfind.study.trial_values.TrialPlan
    trial_dir: Path
    config: Any  # TrainConfig
    dataset: Any  # Dataset with the trial's repeats
    validation_plan: Any
    reporter: OptunaReporter
    started: float = field(default_factory=time.time)
    result: Optional[TrialResult] = None
    error: Optional[BaseException] = None

    @property
    def swept(self) -> bool:
        return bool(self.plan.epoch_boundaries)


def trial_job(ctx, trial, plan, trial_dir: Path, seed: int) -> TrialJob:
    config = trial_train_config(ctx.cfg, plan.train_values, seed=seed, output_dir=trial_dir)
    validation_plan = used_validation_steps(plan.validation, plan.trial_steps, plan.epoch_boundaries,
                                            pruner=ctx.cfg.pruner, prunes=not ctx.cfg.pareto,
                                            eval_every_steps=ctx.space.budget.eval_every_steps)
    dataset = with_repeats(ctx.dataset, {folder: n for folder, _, n in plan.concept_repeats})
    reporter = OptunaReporter(trial, ctx.baseline_val_loss, prune=not ctx.cfg.pareto,
                              best_so_far=bool(plan.epoch_boundaries))
    return TrialJob(trial, plan, trial_dir, config, dataset, validation_plan, reporter)


def train_trials(ctx, jobs: list[TrialJob], together: int = 1) -> None:
    """Train every job, `together` at most at once; each ends with a result or an error."""
    pending = list(jobs)
    while pending:
        group = _cohort_of(pending, together)
        pending = [job for job in pending if job not in group]
        if len(group) == 1:
            _train_alone(ctx, group[0])
        else:
            _train_together(ctx, group)


def _cohort_of(jobs: list[TrialJob], together: int) -> list[TrialJob]:
    """The first job and up to together - 1 others that can share its forward."""
    first = jobs[0]
    if together < 2 or not can_join_cohort(first.config):
        return [first]
    key = _shared_forward(first.config)
    return [first] + [job for job in jobs[1:] if can_join_cohort(job.config)
                      and _shared_forward(job.config) == key][:together - 1]


def _shared_forward(config) -> tuple:
    """What must be equal for runs to share the U-Net's forward: model, images, precision, memory options."""
    return (config.model.model_dump_json(), config.dataset.model_dump_json(exclude={"train_dir", "reg_dir"}),
            config.mixed_precision, config.gradient_checkpointing)


class _Tracker:
    """A job's loop callbacks and what they record."""

    def __init__(self, ctx, job: TrialJob, parts):
        plan = job.plan
        self.state = LoopState(parts.total_steps, parts.steps_per_epoch)
        self.drift = None if ctx.drift_probe is None else DriftRecorder(
            ctx.drift_probe, parts, plan.epoch_boundaries or {plan.params.epochs: plan.trial_steps})
        # drift first: the snapshot's choice of epoch weighs the boundary's drift
        self.snapshots = BestEpochSnapshot(parts.network, plan.epoch_boundaries,
                                           self.drift.by_epoch if self.drift else None)
        self.train_losses = TrainLossRecorder(plan.epoch_boundaries)
        self.callbacks = ([self.drift] if self.drift else []) + [self.snapshots, self.train_losses, job.reporter]
        if ctx.progress is not None and ctx.cfg.progress:
            self.callbacks.append(TrialProgress(job.trial.number, lambda text: ctx.progress(text, True),
                                                PROGRESS_EVERY_S))


def _train_alone(ctx, job: TrialJob) -> None:
    try:
        with lora_run(job.config, ctx.components, job.dataset, ctx.store, ctx.validation_sets,
                      held_out=ctx.held_out, validation_plan=job.validation_plan) as parts:
            tracker = _Tracker(ctx, job, parts)
            try:
                run_loop(parts, tracker.callbacks, tracker.state)
                stopped = None
            except TrainingStopped as stop:
                stopped = stop
            finally:
                job.trial.set_user_attr("steps_done", job.reporter.last_step)
            _conclude(ctx, job, parts, tracker, stopped)
    except Exception as err:  # noqa: BLE001 - the trial's outcome; the caller decides what fails the study
        job.error = err


def _train_together(ctx, jobs: list[TrialJob]) -> None:
    setups = [CohortMemberSetup(job.config, job.dataset, job.validation_plan) for job in jobs]
    try:
        with lora_cohort(setups, ctx.components, ctx.store, ctx.validation_sets, held_out=ctx.held_out) \
                as (cohort, all_parts):
            trackers = [_Tracker(ctx, job, parts) for job, parts in zip(jobs, all_parts)]
            runs = [CohortRun(parts, tracker.callbacks, tracker.state) for parts, tracker in zip(all_parts, trackers)]
            try:
                run_cohort(cohort, runs)
            finally:
                for job in jobs:
                    job.trial.set_user_attr("steps_done", job.reporter.last_step)
            for k, (job, parts, tracker, run) in enumerate(zip(jobs, all_parts, trackers, runs)):
                if run.outcome is not None and not isinstance(run.outcome, TrainingStopped):
                    job.error = run.outcome
                    continue
                with cohort.solo(k):
                    try:
                        _conclude(ctx, job, parts, tracker, run.outcome)
                    except Exception as err:  # noqa: BLE001 - this trial's outcome
                        job.error = err
    except Exception as err:  # noqa: BLE001 - the shared forward failed (out of memory): every trial's outcome
        if is_out_of_memory(err) and not any(job.reporter.last_step for job in jobs):
            _one_by_one(ctx, jobs)  # K at once did not fit before any step: each fits alone, or fails alone
            return
        for job in jobs:
            if job.result is None and job.error is None:
                job.error = err


def _one_by_one(ctx, jobs: list[TrialJob]) -> None:
    free_memory()
    if ctx.progress is not None:
        ctx.progress(f"trials {', '.join(str(job.trial.number) for job in jobs)}: out of memory together "
                     "(--trials-at-once); training them one by one", False)
    for job in jobs:
        job.error = None
        _train_alone(ctx, job)


def _conclude(ctx, job: TrialJob, parts, tracker: _Tracker, stopped: Optional[TrainingStopped]) -> None:
    """Keep the trial's LoRA and metrics; a stopped run keeps a swept trial's best epoch, else fails."""
    snapshots, state = tracker.snapshots, tracker.state
    kept_epoch = job.swept and snapshots.best is not None
    if stopped is not None and not kept_epoch:
        # A swept trial that diverges after a good epoch still has that epoch's result:
        # the shorter trial it stands for would have ended before the divergence.
        raise stopped
    if kept_epoch:
        kept_state, lora_state = snapshots.kept_state(state), snapshots.lora_state
    else:
        kept_state = state
        lora_state = _lora_state_copy(parts.network)
    save_lora(job.trial_dir / "lora.safetensors", lora_state,
              training_metadata(job.config, job.dataset, ctx.components, kept_state, job.started), "fp16")
    metrics = {"val_loss": kept_state.val_loss, "val_history": state.val_history, "steps_done": state.step,
               "steps_planned": job.plan.trial_steps, "clip_i": None, "clip_t": None}
    metrics.update(_epochs_metrics(ctx, job.plan, state, snapshots))
    if tracker.drift is not None:
        metrics.update(tracker.drift.metrics(snapshots.best[0] if kept_epoch else None))
    metrics.update(tracker.train_losses.metrics())
    if stopped is not None:
        metrics["stopped_early"] = f"at step {state.step}: {stopped.reason}"
    job.result = TrialResult(lora_state, metrics)


def _epochs_metrics(ctx, plan, state, snapshots) -> dict:
    """The full run the trial stands for; a swept trial's epoch losses and best epoch."""
    from dataclasses import replace

    if not plan.epoch_boundaries or snapshots.best is None:
        return {"full_run": {"steps": plan.full_run.total_steps, "text": plan.full_run.text}}
    epochs = snapshots.best[0]
    full = plan_trial(replace(plan.params, epochs=epochs), ctx.probe, ctx.space, ctx.stats).full_run
    return {SWEPT_EPOCH_ATTR: epochs, EPOCH_LOSSES_ATTR: epoch_losses(state.val_history, plan.epoch_boundaries),
            "full_run": {"steps": full.total_steps, "text": full.text}}


def _lora_state_copy(network) -> dict:
    """The network's kohya state dict as it is now, copied (training goes on changing the weights)."""
    return {k: v.detach().clone() for k, v in network.kohya_state_dict().items()}


class BestEpochSnapshot:
    """Loop callback of a swept trial: at each epoch boundary, keep the LoRA if its loss is the best.

    Registered before the pruning reporter, so a trial pruned at a boundary still saw it.
    """

    def __init__(self, network, boundaries: dict, drifts: Optional[dict] = None):
        self.network, self.boundaries = network, boundaries
        self.drifts = drifts  # epoch count -> drift, filled by the DriftRecorder before this runs
        self.best: Optional[tuple[int, float]] = None  # (epochs, validation loss)
        self.best_step = 0
        self.lora_state: Optional[dict] = None

    def on_validation(self, state) -> None:
        if state.step not in self.boundaries.values():
            return
        best = best_epoch(state.val_history, self.boundaries, self.drifts)  # epoch_sweep's rule (ties: fewer epochs)
        if best is not None and best != self.best:  # this boundary is the new best
            self.best, self.best_step = best, self.boundaries[best[0]]
            self.lora_state = _lora_state_copy(self.network)

    def kept_state(self, state):
        """The loop state as of the kept epoch (for the LoRA file's ss_steps/ss_epoch metadata)."""
        from dataclasses import replace

        return replace(state, step=self.best_step, val_loss=self.best[1],
                       epoch=-(-self.best_step // max(1, state.steps_per_epoch)))
