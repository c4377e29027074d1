"""The arithmetic of benchmarks/sdxl_vs_kohya.py: s/step as a slope, fixed cost as an intercept,
a warm trial's fixed cost, the printed ratio. No model is built."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "sdxl_vs_kohya.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sdxl_vs_kohya", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_two_runs_give_slope_and_intercept(bench):
    # 3 steps in 40 s, 8 steps in 90 s: 10 s a step, 10 s fixed
    assert bench.slope_intercept([(3, 40.0), (8, 90.0)]) == pytest.approx((10.0, 10.0))


def test_more_runs_are_a_least_squares_fit(bench):
    slope, intercept = bench.slope_intercept([(2, 5.0), (4, 9.0), (6, 13.0), (4, 9.0)])
    assert (slope, intercept) == pytest.approx((2.0, 1.0))


def test_one_step_count_is_refused(bench):
    with pytest.raises(ValueError, match="two or more different step counts"):
        bench.slope_intercept([(3, 40.0), (3, 41.0)])


def test_warm_trial_fixed_counts_only_the_steps_inside_the_trial(bench):
    steps = [(1.0, 3.0), (11.0, 13.0), (14.0, 17.0), (21.0, 22.0)]  # the first and last lie outside
    fixed, counted = bench.warm_trial_fixed((10.0, 20.0), steps)
    assert counted == 2
    assert fixed == pytest.approx(10.0 - 2.0 - 3.0)


def test_ratio_is_kohya_over_lrfind_and_dash_without_a_figure(bench):
    assert bench.ratio(3.0, 2.0) == "x1.50"
    assert bench.ratio(None, 2.0) == "-"
    assert bench.ratio(3.0, None) == "-"
