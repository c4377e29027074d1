"""From the probe's plateau d*lr to the settings of a real run. Pure: no torch.

The folk recipe (DEVELOPERS.md, issue #4), with every factor a named, documented constant so that
`benchmarks/probe_accuracy.py` can correct one in a single place if measurement says so:

- unet_lr        = plateau d*lr x the probe optimizer's factor (PROBE_FACTORS: measured, see below;
                   the folk recipe's factor is 1).
- adamw_lr       = unet_lr x ADAMW_FACTOR (1.0: unet_lr already is the AdamW lr; the measured
                   correction is per probe optimizer, so it lives in PROBE_FACTORS).
- lion_lr        = unet_lr / LION_LR_DIVISOR (3: Lion's sign update has a larger norm than Adam's;
                   its authors advise a 3-10x smaller lr, the recipe takes the low end).
- lion_weight_decay_factor = 3.0: Lion's authors advise 3-10x the AdamW weight decay so that
                   lr x wd, the effective decay, stays the same; 3 matches dividing the lr by 3.
- text_encoder_lr = unet_lr x TEXT_ENCODER_FRACTION (1/4), range [unet_lr/10, unet_lr/2]: the folk
                   range is 1/10..1/2; 1/4 is close to its geometric middle (1/sqrt(20) = 1/4.5), so
                   it is at most 2.5x from either end.
- prodigy: settings for a final run with Prodigy, as its authors advise for diffusion models
  (prodigyopt README): lr=1.0, d_coef=1.0 (lower, e.g. 0.5, to go slower), use_bias_correction=True,
  safeguard_warmup=True, weight_decay=0.01, betas=(0.9, 0.99), decouple=True.

The probe optimizer's factor (PROBE_FACTORS), measured by `benchmarks/probe_accuracy.py` (issue #4,
benchmarks/RESULTS.md "Probe accuracy"): tiny model, shipped example dataset, 64 px, batch 2,
LoRA dim 8 / alpha 8, the probe's 200 steps against the lr with the best validation loss of a
12-point AdamW grid (1e-4..0.3) of 200 steps each. The raw plateau over the grid best (a parabola
in log-lr) for seeds 0..5, and the geometric mean:
    DAdaptAdam  13.4, 6.74, 8.03, 4.12, (67.3), 5.03 -> 6.85  (the folk recipe "plateau = AdamW lr"
                is ~7x too high; seed 4, in brackets, is a staircase the probe flagged with
                confidence 0.51 and is left out: with it the mean is 10.0)
    Prodigy     2.92, 2.71, 2.63, 2.00, 1.95, 2.74       -> 2.46
so unet_lr = plateau / 6.85 (DAdaptAdam) or / 2.46 (Prodigy). Held-out seeds 6, 7, 8 then gave
probe lr / grid best 1.38, 1.36, 4.24 (DAdaptAdam) and 1.02, 0.88, 0.90 (Prodigy). Over all nine
seeds DAdaptAdam's plateau scatters x7 (4.1..29, runs all "converged"), Prodigy's x1.5: no single
factor puts every DAdaptAdam probe within x2 (7 of 9 are), every Prodigy probe is (9 of 9).
Both are measured on the tiny, random-init model only: remeasure them on a real SD model before
trusting them there. A correction goes here, not into callers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from lrfind.errors import ConfigError

ADAMW_FACTOR = 1.0
LION_LR_DIVISOR = 3.0
LION_WEIGHT_DECAY_FACTOR = 3.0
TEXT_ENCODER_FRACTION = 0.25
TEXT_ENCODER_RANGE = (0.1, 0.5)

# plateau d*lr -> unet_lr, per probe optimizer (lower-case, kohya's names and lrfind's aliases).
# 1 / (plateau / AdamW grid best), geometric mean over seeds 0-5 of benchmarks/probe_accuracy.py on
# the tiny model (module docstring; benchmarks/RESULTS.md, "Probe accuracy").
DADAPTATION_PLATEAU_OVER_ADAMW = 6.85
PRODIGY_PLATEAU_OVER_ADAMW = 2.46
PROBE_FACTORS: dict[str, float] = {
    "dadaptation": 1 / DADAPTATION_PLATEAU_OVER_ADAMW,
    "dadaptadam": 1 / DADAPTATION_PLATEAU_OVER_ADAMW,
    "prodigy": 1 / PRODIGY_PLATEAU_OVER_ADAMW,
}


def prodigy_settings(d_coef: float = 1.0) -> dict:
    """Prodigy settings for a final diffusion run (a fresh dict each call: callers may edit it)."""
    return {
        "lr": 1.0,
        "d_coef": d_coef,
        "use_bias_correction": True,
        "safeguard_warmup": True,
        "weight_decay": 0.01,
        "betas": (0.9, 0.99),
        "decouple": True,
    }


@dataclass(frozen=True)
class DerivedSettings:
    """What to train with, derived from one probe plateau."""

    unet_lr: float
    adamw_lr: float
    lion_lr: float
    lion_weight_decay_factor: float
    text_encoder_lr: float
    text_encoder_lr_range: tuple[float, float]
    prodigy: dict = field(default_factory=prodigy_settings)
    probe_optimizer: str = "dadaptation"
    plateau_value: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def derive_settings(plateau_value: float, probe_optimizer: str = "dadaptation") -> DerivedSettings:
    """The recommended settings for a plateau d*lr found with `probe_optimizer`."""
    if not (isinstance(plateau_value, (int, float)) and math.isfinite(plateau_value)) or (
        plateau_value <= 0
    ):
        raise ConfigError(
            f"plateau d*lr {plateau_value!r} is not a positive number; rerun the probe "
            "(its status says why no plateau was found)"
        )
    key = probe_optimizer.strip().lower()
    if key not in PROBE_FACTORS:
        raise ConfigError(
            f"probe optimizer {probe_optimizer!r} is not one lrfind derives from; "
            f"use one of: {', '.join(PROBE_FACTORS)}"
        )
    unet_lr = plateau_value * PROBE_FACTORS[key]
    low, high = TEXT_ENCODER_RANGE
    return DerivedSettings(
        unet_lr=unet_lr,
        adamw_lr=unet_lr * ADAMW_FACTOR,
        lion_lr=unet_lr / LION_LR_DIVISOR,
        lion_weight_decay_factor=LION_WEIGHT_DECAY_FACTOR,
        text_encoder_lr=unet_lr * TEXT_ENCODER_FRACTION,
        text_encoder_lr_range=(unet_lr * low, unet_lr * high),
        prodigy=prodigy_settings(),
        probe_optimizer=key,
        plateau_value=float(plateau_value),
    )


# --- dim / alpha ---------------------------------------------------------------------------------
#
# kohya scales a LoRA's output by alpha / dim: delta_W = (alpha / dim) * up @ down. The rule that
# follows from that scale alone ("alpha_over_dim": keep lr * alpha / dim) does NOT hold on the tiny
# model. benchmarks/probe_rescale.py (benchmarks/RESULTS.md, "Probe dim/alpha rescaling") measured
# the AdamW grid optimum at 10 dim/alpha settings (dim 4..64, alpha 1..32) against dim 8 / alpha 8:
#     fit lr ~ dim^0.18 / alpha^0.56 (5 settings, seeds 0+1), dim^-0.05 / alpha^0.45 (6 more, seed 0)
#     worst miss  sqrt_alpha x1.59 and x1.33;  alpha_over_dim x3.09 and x6.96;  none x3.34 and x2.18
# so the optimum hardly moves with dim at a fixed alpha and moves about as alpha^-1/2.
# A plausible reading, not a proof: Adam moves every weight by ~lr per step whatever its gradient's
# scale; `up` starts at zero and its updates line up with `down`, so the `dim` rank-1 terms of
# up @ down add coherently and the 1/dim of the scale cancels (delta_W ~ alpha * lr); once `down`
# has moved far from its init too, delta_W grows like alpha * lr^2, i.e. the optimum as alpha^-1/2.
#     "sqrt_alpha" (the default):  lr_new = lr * (from_alpha / to_alpha) ** ALPHA_EXPONENT, dim ignored
#     "alpha_over_dim":            lr_new = lr * (from_alpha / from_dim) / (to_alpha / to_dim)
#     "none":                      lr unchanged
# The other way round: probe at the final run's own dim/alpha, no rescale (Prodigy's probe followed
# the optimum within x1.6 at every setting measured; DAdaptAdam's diverged in 3 of its 16 runs).

RescaleRule = Callable[[float, float, float, float, float], float]

ALPHA_EXPONENT = 0.5  # lr ~ alpha^-0.5, dim-independent: measured 0.45..0.56, see above
DEFAULT_RESCALE_RULE = "sqrt_alpha"


def _sqrt_alpha(lr: float, from_dim: float, from_alpha: float, to_dim: float, to_alpha: float):
    return lr * (from_alpha / to_alpha) ** ALPHA_EXPONENT


def _alpha_over_dim(lr: float, from_dim: float, from_alpha: float, to_dim: float, to_alpha: float):
    return lr * (from_alpha / from_dim) / (to_alpha / to_dim)


def _unchanged(lr: float, from_dim: float, from_alpha: float, to_dim: float, to_alpha: float):
    return lr


RESCALE_RULES: dict[str, RescaleRule] = {
    "sqrt_alpha": _sqrt_alpha,
    "alpha_over_dim": _alpha_over_dim,
    "none": _unchanged,
}


# The best AdamW lr of each kind of network (lrfind.network.kinds) / LoRA's at the same dim and
# alpha, each type at its defaults: measured by benchmarks/probe_rescale.py --networks on the tiny
# model, dim 8 / alpha 8, 100 steps, a x1.41 grid refined by a parabola (benchmarks/RESULTS.md,
# "Network type"; 2 significant digits). LoKr's optimum is twice LoRA's; LoHa's a third higher.
NETWORK_LR_FACTORS: dict[str, float] = {"lora": 1.0, "locon": 1.0, "lycoris_locon": 0.87, "loha": 1.3,
                                        "lokr": 2.0}


def network_lr_factor(kind: str) -> float:
    """x the (dim/alpha-rescaled) LoRA lr for a network of `kind`; 1.0 for LoRA."""
    if kind not in NETWORK_LR_FACTORS:
        raise ConfigError(f"network kind {kind!r} has no measured lr factor; use one of "
                          f"{', '.join(NETWORK_LR_FACTORS)}")
    return NETWORK_LR_FACTORS[kind]


def rescale_lr(
    lr: float,
    from_dim: float,
    from_alpha: float,
    to_dim: float,
    to_alpha: float,
    rule: str = DEFAULT_RESCALE_RULE,
) -> float:
    """The lr for a LoRA of (to_dim, to_alpha) equivalent to `lr` at (from_dim, from_alpha)."""
    if rule not in RESCALE_RULES:
        raise ConfigError(f"rescale rule {rule!r} is unknown; use one of: {', '.join(RESCALE_RULES)}")
    named = {"lr": lr, "from_dim": from_dim, "from_alpha": from_alpha, "to_dim": to_dim,
             "to_alpha": to_alpha}
    for name, value in named.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name}={value!r} must be a positive number (network dim/alpha, lr)")
    return RESCALE_RULES[rule](lr, from_dim, from_alpha, to_dim, to_alpha)
