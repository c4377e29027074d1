"""Does a run underfit, fit, overfit (from which epoch) or burn? Pure: no torch.

From a run's per-epoch curves (training loss, held-out loss, drift from the base model) and the
base model's held-out loss, in this order of precedence:

- burned: a loss is NaN or infinite; the held-out loss exceeds BURN_RATIO x the base model's (the
  LoRA made the model worse than it started: an exploding run); the training loss ends above
  BURN_RATIO x its lowest; the training loss is erratic (it rose more than ERRATIC_RISE from one
  epoch to the next) while the held-out loss is above the base model's at ABOVE_BASE_SHARE of the
  epochs or more (benchmarks/RESULTS.md's lr 1e-2 run: above it in 97 of 100 epochs, training
  loss wandering); or at least half of the samples are black (mean < BLACK_MEAN) or uniform
  (standard deviation < UNIFORM_STD), pixel values in [0, 1]. Remedy: a third of the lr, a lower
  network_alpha, a larger batch size.
- overfits, from the first epoch at which one of these holds:
  - the held-out loss rose more than RISE_TOLERANCE (relative) above its minimum, which an
    earlier epoch reached;
  - the held-out loss was at or above the base model's (no better than not training) at half
    the epochs or more while the training loss fell more than FALL_TOLERANCE: it memorises its
    pictures; from the first epoch above the base's (benchmarks/RESULTS.md: on the tiny
    pretrained model the held-out curve's minimum and the training loss's fell on the same epoch
    in both runs, so the minimum alone would call every run a fit);
  - after the held-out loss's best epoch it did not improve while drift grew DRIFT_GROWTH x
    (the LoRA changes the base model more without drawing the concept any better).
  Remedy: stop at the best epoch (fewer epochs or repeats); when it began at the first epochs,
  the lr (or network_alpha) is too high for this data; a lower network_dim memorises less.
- underfits: the held-out loss fell more than RISE_TOLERANCE over the last epochs and its
  lowest is the last epoch's (still improving), or it is within UNDERFIT_GAIN of the base model's
  and the training loss did not fall (learnt next to nothing). Remedy: more epochs or repeats, a
  higher lr, or a larger network_dim / network_alpha.
- fits: none of these; the best epoch is where the held-out loss is lowest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

from lrfind.study.epoch_sweep import EPOCH_DRIFTS_ATTR, EPOCH_LOSSES_ATTR, EPOCH_TRAIN_LOSSES_ATTR

BURN_RATIO = 1.5  # held-out loss 1.5x the base model's, or training loss 1.5x its lowest: exploded
RISE_TOLERANCE = 0.02  # a rise of 2 % above the minimum is more than evaluation noise (deterministic loss)
FALL_TOLERANCE = 0.02  # the training loss must fall 2 % for it to have learnt its images
UNDERFIT_GAIN = 0.01  # held-out loss within 1 % of the base model's: the LoRA changed almost nothing
DRIFT_GROWTH = 2.0  # drift doubled since the best epoch while held-out loss did not improve
ERRATIC_RISE = 0.05  # training loss up 5 % from one epoch to the next: not learning steadily
ABOVE_BASE_SHARE = 0.75  # erratic and worse than the base model at 3/4 of the epochs: burned
BLACK_MEAN = 0.04  # mean pixel value below this (of 1): a black sample
UNIFORM_STD = 0.02  # pixel standard deviation below this: a flat, single-colour sample

Verdict = Literal["underfits", "fits", "overfits", "burned"]


@dataclass(frozen=True)
class SampleStats:
    """Pixel statistics of one sample image, values in [0, 1]."""

    mean: float
    std: float


@dataclass(frozen=True)
class EpochCurves:
    """A run's values per epoch count, `epochs` ascending; train_loss and drift may be empty."""

    epochs: tuple[int, ...]
    held_out_loss: tuple[float, ...]
    base_loss: float  # the base model's held-out loss
    train_loss: tuple[float, ...] = ()
    drift: tuple[float, ...] = ()
    samples: tuple[SampleStats, ...] = ()

    def __post_init__(self):
        for name in ("held_out_loss", "train_loss", "drift"):
            values = getattr(self, name)
            if values and len(values) != len(self.epochs):
                raise ValueError(f"{name} has {len(values)} values for {len(self.epochs)} epochs")
        if list(self.epochs) != sorted(set(self.epochs)) or not self.epochs:
            raise ValueError(f"epochs {self.epochs} must be distinct, ascending and not empty")


@dataclass(frozen=True)
class Diagnosis:
    verdict: Verdict
    best_epoch: Optional[int]  # lowest finite held-out loss (ties: fewer epochs)
    from_epoch: Optional[int] = None  # overfits / burned: the first epoch it shows
    reasons: tuple[str, ...] = ()
    remedies: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        head = self.verdict + (f" from epoch {self.from_epoch}" if self.from_epoch is not None else "")
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        fix = f". Remedy: {'; '.join(self.remedies)}" if self.remedies else ""
        return f"{head}{why}{fix}."


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _best(curves: EpochCurves) -> Optional[int]:
    pairs = [(loss, e) for e, loss in zip(curves.epochs, curves.held_out_loss) if _finite(loss)]
    return min(pairs)[1] if pairs else None


def _burned(c: EpochCurves) -> Optional[Diagnosis]:
    remedies = ("a third of the lr", "a lower network_alpha", "a larger batch size")
    for name, values in (("training loss", c.train_loss), ("held-out loss", c.held_out_loss), ("drift", c.drift)):
        bad = next((e for e, v in zip(c.epochs, values) if not _finite(v)), None)
        if bad is not None:
            return Diagnosis("burned", _best(c), bad, (f"the {name} is not a number at epoch {bad}",), remedies)
    worse = next(((e, v) for e, v in zip(c.epochs, c.held_out_loss) if v > BURN_RATIO * c.base_loss), None)
    if worse is not None:
        return Diagnosis("burned", _best(c), worse[0], (
            f"the held-out loss reached {worse[1]:.4g} at epoch {worse[0]}, {worse[1] / c.base_loss:.2f}x the base "
            "model's: the run exploded",), remedies)
    if c.train_loss and c.train_loss[-1] > BURN_RATIO * min(c.train_loss):
        return Diagnosis("burned", _best(c), c.epochs[-1], (
            f"the training loss ended at {c.train_loss[-1]:.4g}, {c.train_loss[-1] / min(c.train_loss):.2f}x its "
            "lowest: an erratic, exploding run",), remedies)
    erratic = next((e for e, a, b in zip(c.epochs[1:], c.train_loss, c.train_loss[1:]) if b > a * (1 + ERRATIC_RISE)),
                   None)
    above = sum(v > c.base_loss for v in c.held_out_loss)
    if erratic is not None and above >= ABOVE_BASE_SHARE * len(c.epochs):
        return Diagnosis("burned", _best(c), erratic, (
            f"the training loss rose more than {ERRATIC_RISE:.0%} at epoch {erratic} and the held-out loss was above "
            f"the base model's at {above} of {len(c.epochs)} epochs: an erratic run",), remedies)
    broken = [s for s in c.samples if s.mean < BLACK_MEAN or s.std < UNIFORM_STD]
    if c.samples and 2 * len(broken) >= len(c.samples):
        return Diagnosis("burned", _best(c), None, (
            f"{len(broken)} of {len(c.samples)} samples are black or a single flat colour",), remedies)
    return None


def _overfit_start(c: EpochCurves, best: int) -> Optional[tuple[int, str]]:
    """(the first epoch overfitting shows, why), by the rules of the module doc; None if it does not."""
    starts = []
    low = min(v for v in c.held_out_loss)
    risen = [e for e, v in zip(c.epochs, c.held_out_loss) if e > best and v > low * (1 + RISE_TOLERANCE)]
    if risen:
        last = c.held_out_loss[-1]
        starts.append((risen[0], f"the held-out loss was lowest at epoch {best} ({low:.4g}, {low / c.base_loss:.2f}x "
                                 f"the base model's) and rose to {last:.4g} by epoch {c.epochs[-1]}"))
    above = [e for e, v in zip(c.epochs, c.held_out_loss) if v >= c.base_loss]
    if c.train_loss and 2 * len(above) >= len(c.epochs) and c.train_loss[-1] < c.train_loss[0] * (1 - FALL_TOLERANCE):
        starts.append((above[0], f"the held-out loss was no better than the base model's ({c.base_loss:.4g}) at "
                                 f"{len(above)} of {len(c.epochs)} epochs while the training loss fell "
                                 f"{c.train_loss[0]:.4g} → {c.train_loss[-1]:.4g}: it memorises its training images"))
    if c.drift:
        at_best = c.drift[c.epochs.index(best)]
        grown = [e for e, d in zip(c.epochs, c.drift) if e > best and at_best > 0 and d >= DRIFT_GROWTH * at_best]
        if grown:
            starts.append((grown[0], f"after epoch {best} drift from the base model grew {c.drift[-1] / at_best:.1f}x "
                                     "while the held-out loss did not improve"))
    return min(starts) if starts else None


def _overfit_remedies(c: EpochCurves, best: int, start: int) -> tuple[str, ...]:
    remedies = [f"keep epoch {best} (fewer epochs, or fewer repeats)"] if best < c.epochs[-1] else []
    if start <= c.epochs[min(1, len(c.epochs) - 1)]:  # from the first epochs on: it learns too fast
        remedies.append("a lower lr or network_alpha")
    remedies.append("a lower network_dim, which memorises less")
    return tuple(remedies)


def _underfits(c: EpochCurves, best: int) -> Optional[Diagnosis]:
    remedies = ("more epochs or repeats", "a higher lr", "a larger network_dim or network_alpha")
    losses = c.held_out_loss
    if len(losses) >= 2 and best == c.epochs[-1] and losses[-1] < losses[-2] * (1 - RISE_TOLERANCE):
        return Diagnosis("underfits", best, None, (
            f"the held-out loss was still falling at the last epoch ({losses[-2]:.4g} → {losses[-1]:.4g} from "
            f"epoch {c.epochs[-2]} to {c.epochs[-1]})",), remedies)
    train_fell = bool(c.train_loss) and c.train_loss[-1] < c.train_loss[0] * (1 - FALL_TOLERANCE)
    if min(losses) > c.base_loss * (1 - UNDERFIT_GAIN) and not train_fell:
        return Diagnosis("underfits", best, None, (
            f"the held-out loss stayed within {UNDERFIT_GAIN:.0%} of the base model's ({c.base_loss:.4g}) and "
            "the training loss did not fall: it learnt next to nothing",), remedies)
    return None


def diagnose(curves: EpochCurves) -> Diagnosis:
    """The verdict, from which epoch, why, and what to change (see the module doc for the rules)."""
    if not (_finite(curves.base_loss) and curves.base_loss > 0):
        raise ValueError(f"the base model's held-out loss is {curves.base_loss}; it must be a positive number")
    burned = _burned(curves)
    if burned is not None:
        return burned
    best = _best(curves)
    start = _overfit_start(curves, best)
    if start is not None:
        return Diagnosis("overfits", best, start[0], (start[1],), _overfit_remedies(curves, best, start[0]))
    under = _underfits(curves, best)
    if under is not None:
        return under
    low = min(curves.held_out_loss)
    return Diagnosis("fits", best, None, (
        f"the held-out loss is lowest at epoch {best} ({low:.4g}, {low / curves.base_loss:.2f}x the base model's)",))


def curves_from_trial(epoch_val_losses: dict, base_loss: float, epoch_drifts: Optional[dict] = None,
                      epoch_train_losses: Optional[dict] = None, samples: Sequence[SampleStats] = ()) -> EpochCurves:
    """EpochCurves from a trial's user attributes ({"epochs": value} as the study stores them); a
    drift or training-loss curve that lacks some epoch is left out."""
    epochs = tuple(sorted(int(e) for e in epoch_val_losses))

    def curve(values: Optional[dict]) -> tuple[float, ...]:
        values = values or {}
        return tuple(float(values[str(e)]) for e in epochs) if all(str(e) in values for e in epochs) else ()

    return EpochCurves(epochs=epochs, held_out_loss=curve(epoch_val_losses), base_loss=float(base_loss),
                       drift=curve(epoch_drifts), train_loss=curve(epoch_train_losses), samples=tuple(samples))


def diagnose_trial(user_attrs: dict) -> Optional[Diagnosis]:
    """A swept trial's diagnosis from its user attributes; None for a trial of one epoch count
    (one point is no curve) or one without a finite loss ratio."""
    losses = user_attrs.get(EPOCH_LOSSES_ATTR) or {}
    ratio, loss = user_attrs.get("val_loss_ratio"), user_attrs.get("val_loss")
    if len(losses) < 2 or not (_finite(ratio) and _finite(loss) and ratio > 0):
        return None
    return diagnose(curves_from_trial(losses, loss / ratio, user_attrs.get(EPOCH_DRIFTS_ATTR),
                                      user_attrs.get(EPOCH_TRAIN_LOSSES_ATTR)))
