"""Plateau detection on tables of synthetic d*lr curves (clean, noisy, staircase, NaN, tiny)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrfind.probe.plateau import STATUSES, PlateauResult, analyse_curve

D0 = 1e-6
LEVEL = 0.08  # FACTS.md: DAdaptAdam flat by step ~36 at ~0.08


def exponential_rise(n, level=LEVEL, rate=0.31, start=0):
    """d*lr from d0, rising by `rate` per step in log space from `start`, capped at `level`."""
    steps = np.arange(1, n + 1)
    log_values = np.minimum(math.log(D0) + rate * np.maximum(steps - start, 0), math.log(level))
    return steps, np.exp(log_values)


def logistic_rise(n, mid, width, level=LEVEL):
    """A gradual approach: log d*lr follows a logistic from d0 to `level`."""
    steps = np.arange(1, n + 1)
    fraction = 1 / (1 + np.exp(-(steps - mid) / width))
    return steps, np.exp(math.log(D0) + (math.log(level) - math.log(D0)) * fraction)


def with_noise(curve, sigma, seed=0):
    steps, values = curve
    rng = np.random.default_rng(seed)
    return steps, values * np.exp(rng.normal(0.0, sigma, values.size))


def staircase(n=300):
    """Flat at 0.08 from ~step 36, then a 3x step up between steps 190 and 275 (FACTS.md)."""
    steps, values = exponential_rise(n)
    ramp = np.clip((steps - 190) / 85, 0, 1)
    return steps, values * np.exp(ramp * math.log(3))


def step_up_after(step, n=300):
    """A long plateau at 0.08 that jumps 3x after `step`: a new rise, not yet a plateau."""
    steps, values = exponential_rise(n)
    return steps, np.where(steps > step, 3 * values, values)


def with_tail(curve, from_index, fill):
    steps, values = curve
    values = values.copy()
    values[from_index:] = fill
    return steps, values


def flat_at_d0(n=100, seed=0):
    rng = np.random.default_rng(seed)
    return np.arange(1, n + 1), D0 * np.exp(rng.normal(0, 0.01, n))


# name, curve, status, expected value (None: no value), relative tolerance, plateau_step range
CASES = [
    ("clean plateau", exponential_rise(100), "converged", LEVEL, 0.02, (33, 40)),
    ("slow approach", logistic_rise(200, mid=60, width=12), "converged", LEVEL, 0.1, (100, 160)),
    ("long run", exponential_rise(1000), "converged", LEVEL, 0.02, (33, 40)),
    ("staircase: later level", staircase(), "converged", 3 * LEVEL, 0.1, (250, 276)),
    ("still rising at end", exponential_rise(30), "still_rising", math.exp(math.log(D0) + 0.31 * 30),
     0.25, None),
    ("steady slow rise", exponential_rise(200, level=10, rate=0.05), "still_rising",
     math.exp(math.log(D0) + 0.05 * 200), 0.25, None),
    ("step up in the last steps", step_up_after(292), "still_rising", 3 * LEVEL, 0.25, None),
    ("flat at d0", flat_at_d0(), "stuck_at_d0", D0, 0.1, None),
    ("NaN tail", with_tail(exponential_rise(100), 90, np.nan), "diverged", LEVEL, 1e-6, None),
    ("inf tail", with_tail(exponential_rise(100), 95, np.inf), "diverged", LEVEL, 1e-6, None),
    ("NaN from the start", with_tail(exponential_rise(100), 0, np.nan), "diverged", None, 0, None),
    ("single point", ([1], [D0]), "still_rising", D0, 1e-9, None),
    ("empty", ([], []), "still_rising", None, 0, None),
    ("noisy plateau 10%", with_noise(exponential_rise(100), 0.1), "converged", LEVEL, 0.1, (30, 42)),
    ("noisy plateau 30%", with_noise(exponential_rise(200), 0.3, seed=1), "converged", LEVEL, 0.15,
     (28, 45)),
    ("plateau in the last 12%", exponential_rise(100, start=52), "converged", LEVEL, 0.02, (86, 90)),
    ("plateau in the last 3%", exponential_rise(100, start=62), "still_rising", LEVEL, 0.02, None),
]


@pytest.mark.parametrize(
    "curve, status, value, rel_tol, step_range",
    [case[1:] for case in CASES], ids=[case[0] for case in CASES],
)
def test_curve_table(curve, status, value, rel_tol, step_range):
    steps, values = curve
    result = analyse_curve(steps, values, d0=D0)
    assert result.status == status, result.advice
    assert 0.0 <= result.confidence <= 1.0
    assert result.advice
    if value is None:
        assert result.value is None
    else:
        assert result.value == pytest.approx(value, rel=rel_tol)
    if step_range is None:
        assert result.plateau_step is None
    else:
        assert step_range[0] <= result.plateau_step <= step_range[1]
        start, end = result.window
        assert result.window_steps == (steps[start], steps[end - 1])


def _confidence(curve):
    return analyse_curve(*curve, d0=D0).confidence


def test_confidence_orders_clean_noisy_short():
    clean = _confidence(exponential_rise(100))
    noisy = _confidence(with_noise(exponential_rise(100), 0.2))
    short = _confidence(exponential_rise(100, start=52))
    assert clean > noisy > short
    assert clean > 0.9


def test_staircase_lowers_confidence_and_names_the_earlier_level():
    result = analyse_curve(*staircase(), d0=D0)
    first, last, earlier_value = result.earlier_plateau
    assert earlier_value == pytest.approx(LEVEL, rel=0.05)
    assert first < 60 and 180 <= last <= 215
    assert "stepping up" in result.advice


def test_an_earlier_plateau_costs_confidence_on_an_identical_final_plateau():
    steps, _ = exponential_rise(300)
    sharp_step = np.where(steps > 260, 3 * LEVEL, exponential_rise(300)[1])
    direct = exponential_rise(300, level=3 * LEVEL, start=221)  # within 20 % of 0.24 from step 261
    with_step = analyse_curve(steps, sharp_step, d0=D0)
    without = analyse_curve(*direct, d0=D0)
    assert with_step.plateau_step == without.plateau_step == 261
    assert with_step.earlier_plateau is not None and without.earlier_plateau is None
    assert with_step.confidence < 0.8 * without.confidence


def test_still_rising_advice_asks_for_twice_the_steps():
    result = analyse_curve(*exponential_rise(30), d0=D0)
    assert "60 steps" in result.advice and "lower bound" in result.advice


def test_stuck_advice_says_what_to_check():
    advice = analyse_curve(*flat_at_d0(), d0=D0).advice
    assert "d0" in advice and "captions" in advice


def test_loss_nan_tail_is_divergence_even_with_finite_dlr():
    steps, values = exponential_rise(100)
    losses = np.full(100, 0.1)
    losses[97:] = np.nan
    result = analyse_curve(steps, values, losses, d0=D0)
    assert result.status == "diverged"
    assert result.value == pytest.approx(values[96])
    assert "step 98" in result.advice


def test_isolated_nan_mid_curve_is_ignored():
    steps, values = with_tail(exponential_rise(100), 60, np.nan)
    values[61:] = LEVEL
    result = analyse_curve(steps, values, d0=D0)
    assert result.status == "converged"
    assert result.value == pytest.approx(LEVEL)


def test_unsorted_steps_are_sorted_and_window_indexes_the_input():
    steps, values = exponential_rise(100)
    order = np.random.default_rng(3).permutation(100)
    result = analyse_curve(steps[order], values[order], d0=D0)
    reference = analyse_curve(steps, values, d0=D0)
    assert result.value == pytest.approx(reference.value)
    assert result.plateau_step == reference.plateau_step
    assert steps[order][result.window[1] - 1] == 100


def test_flat_from_the_first_step_with_an_other_d0_is_stuck():
    steps = np.arange(1, 51)
    result = analyse_curve(steps, np.full(50, 1e-4), d0=1e-6)
    assert result.status == "stuck_at_d0"


def test_late_logging_start_on_a_plateau_converges():
    steps = np.arange(100, 200)  # logging began after the rise
    result = analyse_curve(steps, np.full(100, LEVEL), d0=D0)
    assert result.status == "converged"
    assert result.plateau_step == 100


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        analyse_curve([1, 2, 3], [1e-6, 2e-6])


def test_result_is_frozen_and_serialisable():
    result = analyse_curve(*exponential_rise(100), d0=D0)
    assert isinstance(result, PlateauResult) and result.status in STATUSES
    with pytest.raises(AttributeError):
        result.value = 1.0  # type: ignore[misc]
    data = result.to_dict()
    assert data["status"] == "converged" and data["window"] == result.window


def test_losses_never_recorded_do_not_mean_divergence():
    steps, values = exponential_rise(100)
    result = analyse_curve(steps, values, [None] * 100, d0=D0)
    assert result.status == "converged"
