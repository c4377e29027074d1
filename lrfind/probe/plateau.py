"""Find where a D-Adaptation / Prodigy `d*lr` curve stabilises: a pure function of the recorded curve.

Like Lightning's LR finder, the probe records and this module analyses; no torch here.

What the curve looks like (FACTS.md): `d*lr` starts at d0 (1e-6), rises exponentially, then
flattens. `d` never decreases, so the true curve is non-decreasing; it can flatten, stay flat a long
time and then step up again (a staircase). The answer is the LAST plateau when it is long enough.

Method, in log space (the curve spans orders of magnitude and noise is multiplicative):
1. Drop unusable points (NaN, inf, <= 0). A non-finite tail (of d*lr, or of the loss when any loss
   is finite) is a diverged run: report the last finite d*lr. Isolated NaNs mid-curve are dropped.
2. Smooth with a running median (robust to outliers), then fit the best non-decreasing curve to it
   (isotonic regression), because the true d never decreases: dips are noise.
3. Noise: the robust spread (MAD) of the step-to-step differences of log d*lr; the median removes a
   steady trend, so a rising curve does not count as noise.
4. The plateau criterion. k = the trailing window = max(5 points, 10 % of the points), widened on
   a noisy curve until a rise of tol stands out of the scatter of a fitted slope (at most half the
   run). Tolerance tol = max(ln 1.2, 3 x the noise left after smoothing).
   The final level L = the median of log d*lr over the trailing window. The plateau starts at the
   first point where the monotone fit reaches L - tol; it ends at the last point. The curve has
   CONVERGED when (a) d*lr rose by less than tol over the trailing window (by default: rose
   < ~20 % over the last 10 % of the run), measured both by the monotone fit (sees a late step)
   and by a Theil-Sen slope of the raw points (sees a steady rise under noise), and (b) the
   plateau is at least k points long. Otherwise it is STILL_RISING and the last level is a lower
   bound. Windows count points, so they assume d*lr is logged at a steady interval.
5. The value: the median d*lr over the plateau.
6. A staircase: before the final plateau, a stretch of >= k points where the monotone fit rose by
   less than tol, at a level above d0 x 3, is an earlier plateau: the later level is reported and
   confidence drops.

Confidence (0..1) is a product of factors, each 1 for a clean long plateau:
    length    = min(1, plateau points / (0.5 x all points))   a plateau covering half the run is full
    flatness  = 1 / (1 + (residual rise / ln 1.2)^2)           residual rise = median log d*lr of the
                                                               plateau's last third minus its first
    noise     = 1 / (1 + (noise / ln 1.35)^2)                  30 % scatter halves it
    samples   = min(1, plateau points / 10)                    a handful of points proves little
    staircase = 0.6 if an earlier plateau was found, else 1
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

STATUSES = ("converged", "still_rising", "stuck_at_d0", "diverged")

MIN_POINTS = 8  # fewer points than this cannot show a rise and a plateau
MIN_PLATEAU_POINTS = 5
PLATEAU_MIN_FRACTION = 0.10  # the trailing window k, as a fraction of the run
MIN_TOLERANCE = math.log(1.2)  # "flat" = rose by less than ~20 %
NOISE_TOLERANCE_FACTOR = 3.0  # the band widens to 3 sigma of the smoothed noise
STUCK_RISE_FACTOR = 3.0  # never rose 3x above d0 -> stuck
FULL_LENGTH_FRACTION = 0.5
RISE_SCALE = math.log(1.2)
NOISE_SCALE = math.log(1.35)
FULL_SAMPLE_POINTS = 10
STAIRCASE_PENALTY = 0.6
SLOPE_SCATTER_SIGMAS = 2.5
MORE_STEPS_FACTOR = 2  # advice: run this many times the steps


@dataclass(frozen=True)
class PlateauResult:
    """The analysis of one d*lr curve. `window` indexes the caller's arrays (start, end exclusive)."""

    status: str
    value: float | None  # plateau d*lr; a lower bound when still_rising; last finite if diverged
    plateau_step: float | None  # the step where the final plateau starts
    confidence: float
    advice: str
    window: tuple[int, int] | None = None  # plateau indices into the input arrays
    window_steps: tuple[float, float] | None = None  # plateau first and last step
    trailing_points: int = 0  # k, the trailing window the criterion used
    tolerance: float = 0.0  # log-space band
    noise: float = 0.0  # robust sigma of log d*lr step differences
    residual_rise: float = 0.0  # log rise across the plateau
    earlier_plateau: tuple[float, float, float] | None = None  # (first step, last step, d*lr)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Fit:
    """Intermediate numbers of one curve, in log space."""

    steps: np.ndarray  # usable points only
    log_values: np.ndarray
    monotone: np.ndarray  # isotonic fit of the running median
    index_map: np.ndarray  # usable position -> index into the caller's arrays
    trailing_points: int
    tolerance: float
    noise: float


def analyse_curve(
    steps: Sequence[float],
    values: Sequence[float],
    losses: Sequence[float] | None = None,
    *,
    d0: float = 1e-6,
) -> PlateauResult:
    """Classify a d*lr curve and find its final plateau. `losses`, when given, align with `steps`."""
    steps_arr = np.asarray(steps, dtype=float).reshape(-1)
    values_arr = np.asarray(values, dtype=float).reshape(-1)
    if steps_arr.shape != values_arr.shape:
        raise ValueError(f"steps ({steps_arr.size}) and values ({values_arr.size}) differ in length")
    if steps_arr.size == 0:
        return PlateauResult(
            "still_rising", None, None, 0.0,
            "The d*lr curve has no points: run the probe (or log d*lr to TensorBoard) first.",
        )
    order = np.argsort(steps_arr, kind="stable")
    diverged_at = _divergence_index(values_arr[order], _aligned_losses(losses, order))
    if diverged_at is not None:
        return _diverged(steps_arr, values_arr, order, diverged_at, d0)
    usable = order[values_arr[order] > 0]  # finite here: non-finite only mid-curve, dropped
    usable = usable[np.isfinite(values_arr[usable])]
    if usable.size < MIN_POINTS:
        return _too_short(steps_arr, values_arr, usable)
    fit = _fit(steps_arr[usable], np.log(values_arr[usable]), usable)
    if _is_stuck(fit, d0):
        return _stuck(fit, d0)
    return _classify(fit, d0)


def _aligned_losses(losses: Sequence[float] | None, order: np.ndarray) -> np.ndarray | None:
    if losses is None:
        return None
    losses_arr = np.asarray(losses, dtype=float).reshape(-1)  # None -> NaN
    if losses_arr.size != order.size:
        raise ValueError(f"losses ({losses_arr.size}) and steps ({order.size}) differ in length")
    if not np.isfinite(losses_arr).any():
        return None  # no loss was recorded: it says nothing about divergence
    return losses_arr[order]


def _divergence_index(values: np.ndarray, losses: np.ndarray | None) -> int | None:
    """Sorted position of the first point of a non-finite tail (d*lr or loss), else None."""
    bad = ~np.isfinite(values)
    if losses is not None:
        bad |= ~np.isfinite(losses)
    if not bad[-1]:
        return None  # an isolated NaN mid-curve followed by finite points is a logging glitch
    good = np.flatnonzero(~bad)
    return int(good[-1]) + 1 if good.size else 0


def _plateau_before(steps, values, finite_before: list, d0: float):
    """(first step, last step, d*lr) of a plateau the run held before it ran away, else None.

    d*lr usually climbs steeply just before the NaN, so the finite prefix is analysed with its
    tail cut back a tenth at a time (down to half of it) until what is left ends flat."""
    n = len(finite_before)
    for end in range(n, max(MIN_POINTS, n // 2) - 1, -max(1, n // 10)):
        kept = finite_before[:end]
        prefix = analyse_curve(steps[kept], values[kept], d0=d0)
        if prefix.status == "converged":
            return prefix.window_steps[0], prefix.window_steps[1], prefix.value
    return None


def _diverged(steps, values, order, diverged_at: int, d0: float) -> PlateauResult:
    finite_before = [i for i in order[:diverged_at] if np.isfinite(values[i]) and values[i] > 0]
    bad_step = _num(steps[order[diverged_at]])
    if not finite_before:
        return PlateauResult(
            "diverged", None, None, 0.0,
            f"Training diverged: d*lr or the loss is NaN/inf from step {bad_step} with no finite "
            "d*lr before it; check the data and captions, use fp32, and lower d_coef or d0.",
        )
    last = finite_before[-1]
    value = float(values[last])
    advice = (
        f"Training diverged at step {bad_step} (NaN/inf); the last finite d*lr was {value:.3g}: "
        "treat it as too high (no lr is derived from it) or lower d_coef, use fp32, and check "
        "the data and captions."
    )
    earlier = _plateau_before(steps, values, finite_before, d0)
    if earlier is not None:
        advice += f" Before that d*lr had flattened at {earlier[2]:.3g} (steps {earlier[0]:g}-{earlier[1]:g})."
    return PlateauResult(
        "diverged", value, None, 0.0, advice, earlier_plateau=earlier,
    )


def _too_short(steps, values, usable: np.ndarray) -> PlateauResult:
    if usable.size == 0:
        return PlateauResult(
            "still_rising", None, None, 0.0,
            "The d*lr curve has no usable (finite, positive) points: check the logging.",
        )
    last = int(usable[-1])
    value = float(values[last])
    last_step = _num(steps[last])
    return PlateauResult(
        "still_rising", value, None, 0.05 * usable.size / MIN_POINTS,
        f"Only {usable.size} point(s): d*lr {value:.3g} is a lower bound. Run at least "
        f"{_more_steps(last_step)} steps so the curve can rise and flatten.",
    )


def _fit(steps: np.ndarray, log_values: np.ndarray, index_map: np.ndarray) -> _Fit:
    n = log_values.size
    smooth_width = min(15, max(3, 2 * round(0.025 * n) + 1))  # odd, ~5 % of the run
    monotone = _isotonic(_running_median(log_values, smooth_width))
    # Differences of the last half: the median removes a steady trend; a difference of two
    # points has twice the variance of one point.
    noise = _robust_sigma(np.diff(log_values[-max(3, n // 2):])) / math.sqrt(2)
    smoothed_noise = 1.25 * noise / math.sqrt(smooth_width)  # the median of m is ~1.25x the mean
    tolerance = max(MIN_TOLERANCE, NOISE_TOLERANCE_FACTOR * smoothed_noise)
    return _Fit(
        steps, log_values, monotone, index_map, _trailing_points(n, noise, tolerance),
        tolerance, noise,
    )


def _trailing_points(n: int, noise: float, tolerance: float) -> int:
    """k: 10 % of the run (>= 5 points), widened on a noisy curve until a rise of `tolerance`
    stands out of the scatter of a fitted slope (2.5 sigma * sqrt(12 / k)), at most half the run."""
    by_fraction = max(MIN_PLATEAU_POINTS, math.ceil(PLATEAU_MIN_FRACTION * n))
    by_noise = math.ceil(12 * (SLOPE_SCATTER_SIGMAS * noise / tolerance) ** 2)
    return max(by_fraction, min(by_noise, n // 2))


def _is_stuck(fit: _Fit, d0: float) -> bool:
    """Never rose 3x above d0, or showed no rise at all from a first point logged at step <= 1."""
    reference = min(math.log(d0), fit.log_values[0])
    if fit.monotone[-1] - reference < math.log(STUCK_RISE_FACTOR):
        return True
    no_rise = fit.monotone[-1] - fit.monotone[0] < fit.tolerance
    return bool(no_rise and fit.steps[0] <= 1)


def _stuck(fit: _Fit, d0: float) -> PlateauResult:
    value = float(math.exp(np.median(fit.log_values)))
    last_step = _num(fit.steps[-1])
    return PlateauResult(
        "stuck_at_d0", value, None, 0.0,
        f"d*lr stayed near its start ({value:.3g}, d0={d0:.3g}) for {last_step} steps. d can sit "
        f"at d0 a while (Prodigy with safeguard_warmup): run about {_more_steps(last_step)} steps; "
        "if it still does not rise, raise d0 (e.g. 1e-4), check the images, captions and loss, "
        "and set lr=1.0 for DAdaptation/Prodigy.",
        trailing_points=fit.trailing_points, tolerance=fit.tolerance, noise=fit.noise,
    )


def _classify(fit: _Fit, d0: float) -> PlateauResult:
    n = fit.log_values.size
    k = fit.trailing_points
    level = float(np.median(fit.log_values[-k:]))
    start = int(np.searchsorted(fit.monotone, level - fit.tolerance, side="left"))
    if _trailing_rise_is_significant(fit) or n - start < k:
        return _still_rising(fit, level)
    plateau = fit.log_values[start:]
    value = float(math.exp(np.median(plateau)))
    third = max(1, plateau.size // 3)
    residual_rise = max(0.0, float(np.median(plateau[-third:]) - np.median(plateau[:third])))
    earlier = _earlier_plateau(fit, start, d0)
    confidence = _confidence(plateau.size, n, residual_rise, fit.noise, earlier is not None)
    first_step, last_step = _num(fit.steps[start]), _num(fit.steps[-1])
    return PlateauResult(
        "converged", value, first_step, confidence,
        _converged_advice(value, first_step, last_step, plateau.size / n, confidence, earlier),
        window=(int(fit.index_map[start]), int(fit.index_map[-1]) + 1),
        window_steps=(first_step, last_step), trailing_points=k, tolerance=fit.tolerance,
        noise=fit.noise, residual_rise=residual_rise, earlier_plateau=earlier,
    )


def _trailing_rise_is_significant(fit: _Fit) -> bool:
    """Criterion (a): did d*lr rise by tol or more over the trailing window?

    Two views, either suffices: the monotone fit catches a late step (a robust slope would call a
    window that is mostly flat, flat); a Theil-Sen slope over the raw points catches a steady rise
    that noise at the very end hides from the monotone fit. The slope's own scatter widens its bar
    (about sigma * sqrt(12 / k) for k evenly spaced points), so pure noise is not called a rise.
    """
    k = fit.trailing_points
    if fit.monotone[-1] - fit.monotone[-k] >= fit.tolerance:
        return True
    steps, log_values = fit.steps[-k:], fit.log_values[-k:]
    slope = _theil_sen_slope(steps, log_values)
    slope_scatter = SLOPE_SCATTER_SIGMAS * fit.noise * math.sqrt(12 / k)
    return slope * float(steps[-1] - steps[0]) >= max(fit.tolerance, slope_scatter)


def _theil_sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Median of pairwise slopes: robust to outliers. Hand-written (numpy, a few lines) as scipy is
    not a dependency; long windows are thinned to 400 points to bound the pairs."""
    if x.size > 400:
        keep_points = np.linspace(0, x.size - 1, 400).round().astype(int)
        x, y = x[keep_points], y[keep_points]
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    keep = dx > 0
    return float(np.median((y[j] - y[i])[keep] / dx[keep])) if keep.any() else 0.0


def _still_rising(fit: _Fit, level: float) -> PlateauResult:
    # The lower bound: the monotone fit's end, capped by the raw tail so noise cannot inflate it.
    value = float(math.exp(min(fit.monotone[-1], max(level, float(fit.log_values[-1])))))
    last_step = _num(fit.steps[-1])
    span = math.exp(float(fit.monotone[-1] - fit.monotone[-fit.trailing_points]))
    return PlateauResult(
        "still_rising", value, None, 0.1,
        f"d*lr was still rising at the last step {last_step} (x{span:.2g} over the last "
        f"{fit.trailing_points} points): {value:.3g} is a lower bound. Run about "
        f"{_more_steps(last_step)} steps so it can flatten.",
        trailing_points=fit.trailing_points, tolerance=fit.tolerance, noise=fit.noise,
    )


def _earlier_plateau(fit: _Fit, start: int, d0: float) -> tuple[float, float, float] | None:
    """The longest flat stretch of the monotone fit before `start`, if long enough and above d0."""
    monotone = fit.monotone[:start]
    best, left = (0, 0), 0
    for right in range(monotone.size):  # two pointers: the fit is non-decreasing
        while monotone[right] - monotone[left] >= fit.tolerance:
            left += 1
        if right + 1 - left > best[1] - best[0]:
            best = (left, right + 1)
    a, b = best
    if b - a < fit.trailing_points:
        return None
    level = float(np.median(fit.log_values[a:b]))
    if level < math.log(d0 * STUCK_RISE_FACTOR):
        return None  # the flat start at d0 before the rise is not a plateau
    return (_num(fit.steps[a]), _num(fit.steps[b - 1]), float(math.exp(level)))


def _confidence(points: int, n: int, residual_rise: float, noise: float, staircase: bool) -> float:
    length = min(1.0, points / (FULL_LENGTH_FRACTION * n))
    flatness = 1.0 / (1.0 + (residual_rise / RISE_SCALE) ** 2)
    noisiness = 1.0 / (1.0 + (noise / NOISE_SCALE) ** 2)
    samples = min(1.0, points / FULL_SAMPLE_POINTS)
    penalty = STAIRCASE_PENALTY if staircase else 1.0
    return round(length * flatness * noisiness * samples * penalty, 4)


def _converged_advice(value, first_step, last_step, fraction, confidence, earlier) -> str:
    text = (
        f"d*lr flattened at {value:.3g} from step {first_step} to {last_step} "
        f"({fraction:.0%} of the run): unet_lr is derived from it."
    )
    if earlier is not None:
        text += (
            f" It had been flat at {earlier[2]:.3g} (steps {earlier[0]}-{earlier[1]}) before "
            f"stepping up; run about {_more_steps(last_step)} steps to check the later level holds."
        )
    elif confidence < 0.5:
        text += f" The evidence is weak: run about {_more_steps(last_step)} steps to confirm."
    return text


def _running_median(values: np.ndarray, width: int) -> np.ndarray:
    """Centered running median; the window shrinks at the ends instead of padding."""
    half = width // 2
    return np.array(
        [np.median(values[max(0, i - half): i + half + 1]) for i in range(values.size)]
    )


def _isotonic(values: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing fit (pool adjacent violators).

    Hand-written (a dozen lines) because scipy and scikit-learn, which have it, are not
    dependencies of lrfind.
    """
    means: list[float] = []
    sizes: list[int] = []
    for value in values:
        means.append(float(value))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            size = sizes[-2] + sizes[-1]
            means[-2] = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / size
            sizes[-2] = size
            means.pop()
            sizes.pop()
    return np.repeat(means, sizes)


def _robust_sigma(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _more_steps(last_step: float) -> int:
    return int(max(2 * MIN_POINTS, MORE_STEPS_FACTOR * last_step))


def _num(step: float) -> float:
    """Steps are usually whole numbers: give ints back for readable advice and JSON."""
    step = float(step)
    return int(step) if step.is_integer() else step
