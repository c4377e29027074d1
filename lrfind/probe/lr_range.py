"""LR range test analysis: a pure function of the recorded (lr, validation loss) points.

The sweep raises the lr exponentially every step and measures the DETERMINISTIC validation loss
(fixed timesteps and noise) every few steps: the raw per-step loss is dominated by which timestep
was drawn and would bury the signal. As in Lightning's LR finder, the suggestion is where the
smoothed loss falls fastest against log(lr), searched only before the loss minimum; points after
the loss has risen well above its minimum (divergence) are ignored. No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

DIVERGENCE_FACTOR = 1.5  # loss above 1.5 x its minimum so far: the sweep has diverged


@dataclass(frozen=True)
class RangeResult:
    status: str  # "ok" | "no_descent" | "too_short"
    suggested_lr: float | None
    min_loss_lr: float | None  # lr of the smoothed loss minimum
    diverged_at_lr: float | None
    advice: str


def smooth(values: Sequence[float], beta: float = 0.6) -> list[float]:
    """Bias-corrected exponential moving average (Lightning's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def analyse_range(lrs: Sequence[float], losses: Sequence[float]) -> RangeResult:
    pairs = [(lr, loss) for lr, loss in zip(lrs, losses) if lr > 0 and math.isfinite(lr)]
    diverged_at = None
    kept: list[tuple[float, float]] = []
    best = math.inf
    for lr, loss in pairs:
        if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * best:
            diverged_at = lr
            break
        best = min(best, loss)
        kept.append((lr, loss))
    if len(kept) < 4:
        return RangeResult("too_short", None, None, diverged_at,
                           "too few validation points before divergence: sweep more steps or start lower")
    log_lr = np.log([lr for lr, _ in kept])
    smoothed = np.array(smooth([loss for _, loss in kept]))
    i_min = int(np.argmin(smoothed))
    min_loss_lr = float(math.exp(log_lr[i_min]))
    if i_min < 2:
        return RangeResult("no_descent", None, min_loss_lr, diverged_at,
                           "the validation loss never fell: start the sweep at a lower lr")
    slopes = np.gradient(smoothed[: i_min + 1], log_lr[: i_min + 1])
    i_steep = int(np.argmin(slopes[1:])) + 1  # skip the first point: the EMA is still settling
    return RangeResult("ok", float(math.exp(log_lr[i_steep])), min_loss_lr, diverged_at,
                       "suggested lr: where the validation loss fell fastest")


def exponential_lr(step: int, total: int, lr_min: float, lr_max: float) -> float:
    """The sweep's lr at `step` of `total`: lr_min at the first step, lr_max at the last."""
    return lr_min * (lr_max / lr_min) ** (step / max(total - 1, 1))
