"""The study's first trial: the probe's own advice, where the space allows it. Pure.

The probe already says what to train with (AdamW at its derived lr, at the dim/alpha it ran
with, a constant schedule: the folk recipe). Trying that first (Optuna's `enqueue_trial`) costs
one trial, gives the sampler a good point to start from, and means the study recommends nothing
worse than the probe alone would have. Values the space does not allow are left to the sampler,
as are epochs and repeats, which the probe says nothing about.
"""

from __future__ import annotations

import math

from lrfind.artifacts.probe_report import ProbeReport
from lrfind.network.types import type_of
from lrfind.study.dimensions import FloatDimension, IntDimension, NameDimension
from lrfind.study.space import SearchSpace

PROBE_POINT_ATTR = "probe_point_enqueued"


def _allows(dimension, value) -> bool:
    if isinstance(dimension, NameDimension):
        return value in dimension.choices
    if dimension.choices is not None:
        return any(math.isclose(value, c, rel_tol=1e-9) for c in dimension.choices)
    low, high = dimension.range
    if not low <= value <= high:
        return False
    return not isinstance(dimension, IntDimension) or (value - low) % dimension.step == 0


def _choice_value(dimension, value):
    """The space's own spelling of `value` (Optuna matches categorical choices exactly)."""
    if isinstance(dimension, (IntDimension, FloatDimension)) and dimension.choices is not None:
        return next(c for c in dimension.choices if math.isclose(value, c, rel_tol=1e-9))
    return int(value) if isinstance(dimension, IntDimension) else value


def probe_point(space: SearchSpace, probe: ProbeReport) -> dict:
    """Optuna params for the probe's advice, restricted to what `space` allows (maybe empty)."""
    wanted: dict = {"lr_multiplier": 1.0, "optimizer": "AdamW", "lr_scheduler": "constant",
                    # the network the probe trained (its lr needs no type factor)
                    "network_type": type_of(probe.network_module or "networks.lora", probe.network_args or {}).name}
    dim, alpha = probe.network_dim, probe.network_alpha
    if isinstance(dim, (int, float)) and dim > 0 and float(dim).is_integer():
        wanted["network_dim"] = int(dim)
        if isinstance(alpha, (int, float)) and 0 < alpha <= dim:
            wanted["network_alpha_fraction"] = alpha / dim
    point = {}
    for name, value in wanted.items():
        dimension = getattr(space, name)
        if _allows(dimension, value):
            point[name] = _choice_value(dimension, value)
    return point
