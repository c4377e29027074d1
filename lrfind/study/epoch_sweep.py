"""Epochs read off one trial's validation curve instead of one trial per epoch count. Pure.

Kohya users save a LoRA every epoch and pick the best one afterwards. A study can do the same,
exactly, for trials whose learning rate at a step does not depend on the run's length (the
`constant` schedule): the training loop draws its data order, noise and timesteps from
generators seeded per (seed, epoch), and every trial of a study trains with the same seed
(StudyConfig.trial_seed "same"), so after k epochs' worth of steps a trial of the space's most
epochs holds exactly the weights a k-epoch trial ends with (tests/test_epoch_sweep.py checks
this on the tiny model). Validating at each of those steps therefore gives every epoch count's
result for the price of the longest trial, instead of sum(epochs) trials. Schedules that decay
or warm up over the run (cosine, linear, warmup as a share of the steps) differ at every step
with the run's length, so their trials keep sampling epochs.

A swept trial has no `epochs` Optuna parameter; its best epoch is the user attribute
SWEPT_EPOCH_ATTR, and `with_swept_epoch` puts it back where readers of trial params expect it.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

SWEPT_EPOCH_ATTR = "best_epoch"
EPOCH_LOSSES_ATTR = "epoch_val_losses"  # {"1": loss, "2": loss, ...}: the swept epochs' losses
DRIFT_ATTR = "drift"  # the kept epoch's drift from the base model (lrfind.study.trial_drift)
EPOCH_DRIFTS_ATTR = "epoch_drifts"  # {"1": drift, ...} at each boundary, like EPOCH_LOSSES_ATTR
# lr at step t is the same whatever the run's length only for these (lrfind.training.schedulers)
LENGTH_INDEPENDENT_SCHEDULERS = frozenset({"constant"})


def sweeps(epoch_mode: str, lr_scheduler: str, epoch_counts: list[int]) -> bool:
    """Does a trial with this scheduler read its epochs off one run? (--epoch-mode sweep)"""
    return epoch_mode == "sweep" and lr_scheduler in LENGTH_INDEPENDENT_SCHEDULERS and len(epoch_counts) > 1


def epoch_counts(choices: Optional[list[int]], low_high: Optional[tuple[int, int]], step: int = 1) -> list[int]:
    """Every epoch count an `epochs` dimension allows (its choices, or its range's integers)."""
    if choices is not None:
        return sorted(set(int(c) for c in choices))
    low, high = low_high
    return list(range(int(low), int(high) + 1, step))


def boundary_steps(counts: Iterable[int], steps_for: Callable[[int], int]) -> dict[int, int]:
    """epoch count -> the step at which a trial of the most epochs stands for it.

    `steps_for(e)` is the trial length an e-epoch trial would train (budget-scaled). Counts whose
    steps collide (a tiny budget) keep the lowest count: fewer epochs for the same weights.
    """
    out: dict[int, int] = {}
    taken: set[int] = set()
    for count in sorted(counts):
        step = max(1, int(steps_for(count)))
        if step not in taken:
            out[count] = step
            taken.add(step)
    return out


def best_epoch(history: Iterable[tuple[int, float]], boundaries: dict[int, int]) -> Optional[tuple[int, float]]:
    """(epoch count, validation loss) of the lowest finite loss at a boundary step; None if none.

    Ties keep the fewer epochs (same quality, less training). Non-finite losses never win.
    """
    at_step = {int(step): float(loss) for step, loss in history}
    best: Optional[tuple[int, float]] = None
    for count in sorted(boundaries):
        loss = at_step.get(boundaries[count])
        if loss is None or not math.isfinite(loss):
            continue
        if best is None or loss < best[1]:
            best = (count, loss)
    return best


def epoch_losses(history: Iterable[tuple[int, float]], boundaries: dict[int, int]) -> dict[str, float]:
    """{"epoch count": loss} for the boundaries the run reached (JSON keys are strings)."""
    at_step = {int(step): float(loss) for step, loss in history}
    return {str(c): at_step[s] for c, s in sorted(boundaries.items()) if s in at_step}


def with_swept_epoch(params: dict, user_attrs: dict) -> dict:
    """A trial's params with `epochs` filled in from its sweep, for readers that expect it."""
    if "epochs" in params or SWEPT_EPOCH_ATTR not in user_attrs:
        return dict(params)
    return {**params, "epochs": int(user_attrs[SWEPT_EPOCH_ATTR])}
