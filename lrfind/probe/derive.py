"""From the probe's plateau d*lr to the settings of a real run. Pure: no torch.

The folk recipe (DEVELOPERS.md, issue #4). Every per-optimizer factor lives in that optimizer's
module of lrfind.optimizers (one place to correct it if `benchmarks/probe_accuracy.py` says so);
only the text-encoder rule is the recipe's own:

- unet_lr        = plateau d*lr x the probe optimizer's `plateau_factor` (measured; the folk
                   recipe's factor is 1): lrfind.optimizers.dadapt_adam (1/0.56), .prodigy (1/0.71).
- adamw_lr       = unet_lr / AdamW's `lr_divisor` (1: unet_lr already is the AdamW lr).
- lion_lr        = unet_lr / Lion's `lr_divisor` (3), lion_weight_decay_factor = Lion's
                   `weight_decay_factor` (3): lrfind.optimizers.lion says why.
- text_encoder_lr = unet_lr x TEXT_ENCODER_FRACTION (1/4), range [unet_lr/10, unet_lr/2]: the folk
                   range is 1/10..1/2; 1/4 is close to its geometric middle (1/sqrt(20) = 1/4.5), so
                   it is at most 2.5x from either end.
- prodigy: Prodigy's `run_settings()` for a final run (its authors' advice for diffusion models,
  lrfind.optimizers.prodigy): lr=1.0, d_coef=1.0, use_bias_correction, safeguard_warmup, ...

How the plateau factors were measured (issue #4, benchmarks/RESULTS.md "Probe accuracy"): tiny
model, shipped example dataset, 64 px, batch 2, LoRA dim 8 / alpha 8, the probe's 200 steps against
the lr with the best validation loss of a 12-point AdamW grid (1e-4..0.3) of 200 steps each; the
factor is 1 / the geometric mean of plateau / grid best (a parabola in log-lr) over seeds 0..5.
The per-seed values are in each optimizer's module. Both are measured on the tiny, random-init model
only: remeasure them on a real SD model before trusting them there. A correction goes into the
optimizer's module, not into callers.
"""

from __future__ import annotations

import math
from typing import Callable

from lrfind.artifacts.probe_report import DerivedLrs
from lrfind.errors import ConfigError
from lrfind.network.types import network_type, network_type_names
from lrfind.optimizers import optimizer_entry, probe_optimizer_spellings

TEXT_ENCODER_FRACTION = 0.25
TEXT_ENCODER_RANGE = (0.1, 0.5)


def _plateau_factor(probe_optimizer: str) -> float:
    key = probe_optimizer.strip().lower()
    known = probe_optimizer_spellings()
    if key not in known:
        raise ConfigError(
            f"probe optimizer {probe_optimizer!r} is not one lrfind derives from; "
            f"use one of: {', '.join(known)}"
        )
    return optimizer_entry(key).plateau_factor


def derive_settings(plateau_value: float, probe_optimizer: str = "dadaptation") -> DerivedLrs:
    """The recommended settings for a plateau d*lr found with `probe_optimizer`: probe.json's
    derived part as is (the plateau and the probe optimizer are the report's own fields)."""
    if not (isinstance(plateau_value, (int, float)) and math.isfinite(plateau_value)) or (
        plateau_value <= 0
    ):
        raise ConfigError(
            f"plateau d*lr {plateau_value!r} is not a positive number; rerun the probe "
            "(its status says why no plateau was found)"
        )
    unet_lr = plateau_value * _plateau_factor(probe_optimizer)
    adamw, lion = optimizer_entry("AdamW"), optimizer_entry("Lion")
    low, high = TEXT_ENCODER_RANGE
    return DerivedLrs(
        unet_lr=unet_lr,
        adamw_lr=unet_lr / adamw.lr_divisor,
        lion_lr=unet_lr / lion.lr_divisor,
        lion_weight_decay_factor=lion.weight_decay_factor,
        text_encoder_lr=unet_lr * TEXT_ENCODER_FRACTION,
        text_encoder_lr_range=(unet_lr * low, unet_lr * high),
        prodigy=optimizer_entry("Prodigy").run_settings(),
        rescale_rule=RESCALE_RULE_TEXT,
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
# probe.json says how its lr moves with dim/alpha (the default rule, in words)
RESCALE_RULE_TEXT = (f"lr(dim, alpha) = unet_lr * (probe_alpha / alpha) ** {ALPHA_EXPONENT}, dim ignored "
                     "(measured on the tiny model: docs/probe.md)")


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


def network_lr_factor(kind: str) -> float:
    """x the (dim/alpha-rescaled) LoRA lr for a network of `kind`; 1.0 for LoRA (measured: each
    type's `lr_factor` in lrfind.network.types)."""
    if kind not in network_type_names():
        raise ConfigError(f"network kind {kind!r} has no measured lr factor; use one of "
                          f"{', '.join(network_type_names())}")
    return network_type(kind).lr_factor


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
