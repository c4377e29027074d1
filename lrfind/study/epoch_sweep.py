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
DRIFT_ATTR = "drift"  # the kept epoch's drift from the base model (lrfind.study.trial_curves)
EPOCH_DRIFTS_ATTR = "epoch_drifts"  # {"1": drift, ...} at each boundary, like EPOCH_LOSSES_ATTR
EPOCH_TRAIN_LOSSES_ATTR = "epoch_train_losses"  # {"1": mean training loss since the previous boundary, ...}
# A longer epoch count that moves the model further from the base (more drift) must lower the
# held-out loss by more than this share to be kept: the extra drift is what the user pays for it
# in scenes without the trigger word, and half a percent of held-out loss is what it must buy.
EPOCH_MIN_GAIN = 0.005
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


def best_epoch(history: Iterable[tuple[int, float]], boundaries: dict[int, int],
               drifts: Optional[dict[int, float]] = None) -> Optional[tuple[int, float]]:
    """(epoch count, held-out loss) of the best boundary; None if no boundary has a finite loss.

    Counts are taken in order; a later one replaces the best when its loss is lower. Ties keep
    the fewer epochs (same quality, less training); non-finite losses never win. With `drifts`
    (epoch count -> drift from the base model, lrfind.study.trial_curves), a later count that
    drifts further must also pay for it: it must lower the loss by more than EPOCH_MIN_GAIN
    (relative). The rule looks back only, so a trial can keep the best LoRA as it trains.
    """
    at_step = {int(step): float(loss) for step, loss in history}
    best: Optional[tuple[int, float]] = None
    for count in sorted(boundaries):
        loss = at_step.get(boundaries[count])
        if loss is None or not math.isfinite(loss):
            continue
        if best is None or _better(count, loss, best, drifts):
            best = (count, loss)
    return best


def _better(count: int, loss: float, best: tuple[int, float], drifts: Optional[dict[int, float]]) -> bool:
    if not loss < best[1]:
        return False
    new, old = (drifts.get(count), drifts.get(best[0])) if drifts else (None, None)
    if new is None or old is None or new <= old:
        return True
    return loss < best[1] * (1 - EPOCH_MIN_GAIN)


def epoch_losses(history: Iterable[tuple[int, float]], boundaries: dict[int, int]) -> dict[str, float]:
    """{"epoch count": loss} for the boundaries the run reached (JSON keys are strings)."""
    at_step = {int(step): float(loss) for step, loss in history}
    return {str(c): at_step[s] for c, s in sorted(boundaries.items()) if s in at_step}


def with_swept_epoch(params: dict, user_attrs: dict) -> dict:
    """A trial's params with `epochs` filled in from its sweep, for readers that expect it."""
    if "epochs" in params or SWEPT_EPOCH_ATTR not in user_attrs:
        return dict(params)
    return {**params, "epochs": int(user_attrs[SWEPT_EPOCH_ATTR])}
