"""A trial's parameters -> the TrainConfig values it trains with, and its step budget. Pure.

Learning rate (issue #4's recipe; each optimizer's rule is its `lr_rule` in lrfind.optimizers):
    lr = probe unet_lr, rescaled from the probe's dim/alpha to the trial's (derive.rescale_lr, the
         space's `fixed.lr_rescale_rule`), x the trial's network type's lr factor over the probe
         network's (derive.network_lr_factor, measured: docs/networks.md);
    AdamW, Lion: unet_lr = lr x lr_multiplier / the optimizer's lr_divisor (1, 3), weight_decay =
             fixed.weight_decay x its weight_decay_factor (1, 3), text_encoder_lr = unet_lr x
             fixed.text_encoder_lr_fraction (used when the text encoder trains);
    Prodigy: lr 1.0 (text encoder too) and its settings with d_coef = lr_multiplier
             (lrfind.optimizers.prodigy): it estimates its own step size.

Budget: a trial trains its full run's steps (images x repeats x epochs / batch, kohya's count in
lrfind.data.steps) x scale, where scale = trial_budget_steps / the longest full run the space
allows (its highest epochs and repeats), capped at 1. The space's longest run gets exactly the
budget, every trial keeps its length relative to the others (so epochs and repeats still matter),
and nothing is scaled when every run fits the budget.

Epoch sweep (epoch_mode "sweep", lrfind.study.epoch_sweep): a constant-lr trial trains the most
epochs and also validates at the step each fewer-epoch trial would have ended on (its
epoch_boundaries), whose losses are exactly those trials' results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lrfind.artifacts.probe_report import ProbeReport
from lrfind.errors import ConfigError
from lrfind.network.kinds import network_values
from lrfind.network.types import type_of
from lrfind.optimizers import LrInputs, OptimizerValues, optimizer_entry, study_optimizer_names
from lrfind.probe.derive import network_lr_factor, rescale_lr
from lrfind.study.epoch_sweep import boundary_steps, sweeps
from lrfind.study.space import SearchSpace
from lrfind.study.trial_params import TrialParams, space_epoch_counts
from lrfind.study.stats import DatasetStats, StepMath
from lrfind.training.plan import ValidationPlan


@dataclass(frozen=True)
class TrialPlan:
    """What one trial trains with, and the full run it stands for."""

    params: TrialParams
    train_values: dict  # TrainConfig fields for the (budget-scaled) trial
    full_run_values: dict  # TrainConfig fields for the full run (max_train_epochs, no step cap)
    concept_repeats: tuple[tuple[str, str, int], ...]  # (folder, concept name, repeats) per concept
    full_run: StepMath  # unscaled: images x repeats x epochs / batch
    trial_steps: int
    budget_scale: float  # trial_steps ~= full_run.total_steps x budget_scale; 1.0 = not scaled
    epoch_boundaries: dict = field(default_factory=dict)  # swept trials: epochs -> step; else {}
    validation: ValidationPlan = ValidationPlan()  # when the trial validates (before the pruner's cut)

    def to_dict(self) -> dict:
        return {
            "params": self.params.to_params(), "train_values": self.train_values,
            "full_run_values": self.full_run_values,
            "concept_repeats": [list(c) for c in self.concept_repeats],
            "full_run_steps": self.full_run.total_steps, "steps_math": self.full_run.text,
            "trial_steps": self.trial_steps, "budget_scale": self.budget_scale,
            "epoch_boundaries": {str(e): s for e, s in self.epoch_boundaries.items()},
            "validation": {"every_n_steps": self.validation.every_n_steps,
                           "at_steps": sorted(self.validation.at_steps)},
        }


def probe_lr(probe: ProbeReport) -> tuple[float, float, float]:
    """(unet_lr, network_dim, network_alpha) from the probe's report, or a ConfigError saying what to do."""
    named = {"unet_lr": probe.unet_lr, "network_dim": probe.network_dim, "network_alpha": probe.network_alpha}
    missing = [k for k, v in named.items() if v is None]
    if missing:
        raise ConfigError(
            f"probe.json has no {', '.join(missing)} (probe status: {probe.status or 'unknown'}); rerun "
            "`lrfind probe` until it reports a unet_lr (its advice says how), or delete probe.json to rerun it"
        )
    values = tuple(float(v) for v in named.values())
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"probe.json: unet_lr/network_dim/network_alpha {values} must be positive; rerun the probe")
    return values


def longest_full_run(space: SearchSpace, stats: DatasetStats) -> StepMath:
    """The full run of the space's highest epochs and repeats (steps only grow with both)."""
    repeats = space.repeats.highest if space.repeats is not None else None
    return stats.step_math(stats.concept_repeats(repeats), space.epochs.highest, space.fixed.train_batch_size)


def _optimizer_values(params: TrialParams, probe: ProbeReport, space: SearchSpace) -> OptimizerValues:
    rule = optimizer_entry(params.optimizer).lr_rule
    if rule is None:
        raise ConfigError(f"optimizer {params.optimizer!r} has no lr rule in a study; use one of "
                          f"{', '.join(study_optimizer_names())}")
    base_lr, probe_dim, probe_alpha = probe_lr(probe)
    lr = rescale_lr(base_lr, probe_dim, probe_alpha, params.network_dim, params.network_alpha,
                    rule=space.fixed.lr_rescale_rule)
    probe_kind = type_of(probe.network_module or "networks.lora", probe.network_args or {}).name
    lr *= network_lr_factor(params.network_type) / network_lr_factor(probe_kind)
    fixed = space.fixed
    return rule(LrInputs(lr, params.lr_multiplier, fixed.text_encoder_lr_fraction, fixed.weight_decay))


def _train_values(params: TrialParams, opt: OptimizerValues, space: SearchSpace, steps: int) -> dict:
    fixed = space.fixed
    warmup = 0 if params.lr_scheduler == "constant" else round(fixed.lr_warmup_fraction * steps)
    return {
        **fixed.train_values(),  # the run-wide options (resolution, batch size, buckets, clip skip, ...)
        "network_dim": params.network_dim, "network_alpha": params.network_alpha,
        **network_values(params.network_type, params.network_dim, params.network_alpha,
                         params.conv_dim_fraction, lokr_factor=params.lokr_factor),
        "optimizer_type": params.optimizer, "optimizer_args": dict(opt.optimizer_args),
        "learning_rate": opt.unet_lr, "unet_lr": opt.unet_lr,
        "text_encoder_lr": None if fixed.network_train_unet_only else opt.text_encoder_lr,
        "lr_scheduler": params.lr_scheduler, "lr_warmup_steps": warmup,
    }


def _validation_plan(trial_steps: int, budget, boundaries: dict) -> ValidationPlan:
    """Every eval_every_steps; a swept trial at its epoch boundaries instead, and every
    eval_every_steps only before the first one (so the pruner still sees it early): validation
    passes cost about as much as a few training steps each, and the boundaries are the results."""
    every = min(budget.eval_every_steps, trial_steps)
    if not boundaries:
        return ValidationPlan(every)
    first = min(boundaries.values())
    early = range(every, first, every)
    return ValidationPlan.at(set(early) | set(boundaries.values()))


def plan_trial(params: TrialParams, probe: ProbeReport, space: SearchSpace, stats: DatasetStats,
               epoch_mode: str = "sample") -> TrialPlan:
    """Everything a trial trains with; see the module doc for the rules."""
    repeats = stats.concept_repeats(params.repeats)
    batch = space.fixed.train_batch_size
    full = stats.step_math(repeats, params.epochs, batch)
    longest = longest_full_run(space, stats).total_steps
    budget = space.budget
    scale = min(1.0, budget.trial_budget_steps / longest) if longest else 1.0

    def trial_steps_for(epochs: int) -> int:
        return max(1, round(stats.step_math(repeats, epochs, batch).total_steps * scale))

    trial_steps = trial_steps_for(params.epochs)
    boundaries = {}
    counts = space_epoch_counts(space)
    if sweeps(epoch_mode, params.lr_scheduler, counts):
        boundaries = boundary_steps([e for e in counts if e <= params.epochs], trial_steps_for)
    opt = _optimizer_values(params, probe, space)
    trial = _train_values(params, opt, space, trial_steps)
    trial.update(max_train_steps=trial_steps, max_train_epochs=None)
    final = _train_values(params, opt, space, full.total_steps)
    final.update(max_train_steps=None, max_train_epochs=params.epochs)
    return TrialPlan(
        params=params, train_values=trial, full_run_values=final,
        concept_repeats=tuple((c.folder, c.name, r) for c, r in zip(stats.concepts, repeats)),
        full_run=full, trial_steps=trial_steps, budget_scale=scale, epoch_boundaries=boundaries,
        validation=_validation_plan(trial_steps, budget, boundaries),
    )


def trial_train_values(params: TrialParams, probe: ProbeReport, space: SearchSpace, stats: DatasetStats) -> dict:
    """The TrainConfig field values of one trial (plan_trial(...).train_values)."""
    return plan_trial(params, probe, space, stats).train_values
