"""From the probe's plateau d*lr to the settings of a real run. Pure: no torch.

The folk recipe (DEVELOPERS.md, issue #4), with every factor a named, documented constant so that
`benchmarks/probe_accuracy.py` can correct one in a single place if measurement says so:

- unet_lr        = plateau d*lr x the probe optimizer's factor (PROBE_FACTORS).
- adamw_lr       = unet_lr x ADAMW_FACTOR (1.0: the recipe uses the plateau as AdamW's lr as is).
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

The probe optimizer: FACTS.md measured a Prodigy probe's d*lr plateau ~5x lower than DAdaptAdam's
on the same data. We take each optimizer's plateau as it is (factor 1.0 for both): DAdaptAdam's is
the folk recipe's number, and Prodigy's d is by design an estimate of Adam's lr (its paper). Which
one lands nearer the AdamW grid optimum is what `benchmarks/probe_accuracy.py` measures; a
correction goes into PROBE_FACTORS, not into callers.
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
PROBE_FACTORS: dict[str, float] = {
    "dadaptation": 1.0,
    "dadaptadam": 1.0,
    "prodigy": 1.0,
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
# kohya scales a LoRA's output by alpha / dim: delta_W = (alpha / dim) * up @ down. With an
# Adam-type optimizer each weight moves by about lr per step whatever its gradient's scale (the
# update is normalised by the gradient's running RMS), so the change of the layer's output per
# step is about lr * (alpha / dim). To keep that change when dim or alpha change:
#     lr_new = lr * (from_alpha / from_dim) / (to_alpha / to_dim)
# This is a first-order rule: delta_W also sums `dim` rank-1 terms, so how the change grows with
# dim beyond the alpha/dim factor depends on how aligned the updates are. The lead measures the
# rule on the tiny model (issue #4, item 4); "none" keeps the lr unchanged for comparison.

RescaleRule = Callable[[float, float, float, float, float], float]


def _alpha_over_dim(lr: float, from_dim: float, from_alpha: float, to_dim: float, to_alpha: float):
    return lr * (from_alpha / from_dim) / (to_alpha / to_dim)


def _unchanged(lr: float, from_dim: float, from_alpha: float, to_dim: float, to_alpha: float):
    return lr


RESCALE_RULES: dict[str, RescaleRule] = {
    "alpha_over_dim": _alpha_over_dim,
    "none": _unchanged,
}


def rescale_lr(
    lr: float,
    from_dim: float,
    from_alpha: float,
    to_dim: float,
    to_alpha: float,
    rule: str = "alpha_over_dim",
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
