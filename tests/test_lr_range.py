"""LR range test analysis on synthetic (lr, validation loss) curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrfind.probe.lr_range import analyse_range, exponential_lr, smooth


def sweep(n=40, lo=1e-6, hi=1e-1):
    return [exponential_lr(i, n, lo, hi) for i in range(n)]


def valley(lrs, best=1e-3, width=1.0, noise=0.0, seed=0):
    """Loss falls as lr approaches `best` from below, then rises steeply: a typical range test."""
    rng = np.random.default_rng(seed)
    x = np.log10(lrs) - math.log10(best)
    loss = 1.0 - 0.3 / (1 + np.exp(-3 * (x + width))) + np.where(x > 0, 0.5 * x**2, 0)
    return list(loss * (1 + noise * rng.standard_normal(len(lrs))))


@pytest.mark.parametrize("noise", [0.0, 0.01, 0.03])
def test_suggestion_lies_below_the_minimum_on_the_descent(noise):
    lrs = sweep()
    result = analyse_range(lrs, valley(lrs, noise=noise))
    assert result.status == "ok"
    assert 1e-5 < result.suggested_lr < result.min_loss_lr <= 3e-3


def test_divergence_cuts_the_curve_and_is_reported():
    lrs = sweep()
    losses = valley(lrs)
    losses[30:] = [float("nan")] * 10
    result = analyse_range(lrs, losses)
    assert result.diverged_at_lr == pytest.approx(lrs[30])
    assert result.status == "ok"


def test_flat_or_rising_curve_has_no_suggestion():
    lrs = sweep()
    assert analyse_range(lrs, [1.0 + 0.01 * i for i in range(len(lrs))]).suggested_lr is None


def test_too_few_points():
    assert analyse_range([1e-5, 1e-4], [1.0, 0.9]).status == "too_short"
    assert analyse_range([], []).status == "too_short"


def test_smoothing_is_bias_corrected():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])


def test_sweep_endpoints():
    assert exponential_lr(0, 10, 1e-6, 1e-1) == pytest.approx(1e-6)
    assert exponential_lr(9, 10, 1e-6, 1e-1) == pytest.approx(1e-1)
