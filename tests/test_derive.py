"""Derived settings from a plateau d*lr, and the dim/alpha rescaling rule."""

from __future__ import annotations

import math

import pytest

from lrfind.errors import ConfigError
from lrfind.optimizers import optimizer_entry
from lrfind.optimizers.dadapt_adam import PLATEAU_OVER_ADAMW as DADAPTATION_PLATEAU_OVER_ADAMW
from lrfind.optimizers.prodigy import PLATEAU_OVER_ADAMW as PRODIGY_PLATEAU_OVER_ADAMW
from lrfind.artifacts.probe_report import DerivedLrs
from lrfind.probe.derive import (
    DEFAULT_RESCALE_RULE,
    derive_settings,
    rescale_lr,
)

PROBE_FACTORS = {name: optimizer_entry(name).plateau_factor for name in ("dadaptation", "dadaptadam", "prodigy")}


def test_folk_recipe_from_a_dadaptation_plateau():
    # the plateau is divided by the measured DAdaptAdam factor (benchmarks/probe_accuracy.py)
    settings = derive_settings(3e-4 * DADAPTATION_PLATEAU_OVER_ADAMW)
    assert settings.unet_lr == pytest.approx(3e-4)
    assert settings.adamw_lr == pytest.approx(3e-4)
    assert settings.lion_lr == pytest.approx(1e-4)
    assert 3.0 <= settings.lion_weight_decay_factor <= 10.0
    low, high = settings.text_encoder_lr_range
    assert low == pytest.approx(3e-5) and high == pytest.approx(1.5e-4)
    assert low <= settings.text_encoder_lr <= high
    assert settings.text_encoder_lr == pytest.approx(7.5e-5)


def test_probe_factors_are_the_measured_corrections():
    # benchmarks/RESULTS.md "Probe accuracy": plateau / AdamW grid best on tiny-pretrained, kohya's
    # full module set, geometric mean of seeds 0-5 (both below 1: the plateau is a little low)
    assert PROBE_FACTORS["dadaptation"] == PROBE_FACTORS["dadaptadam"] == pytest.approx(1 / 0.56)
    assert PROBE_FACTORS["prodigy"] == pytest.approx(1 / 0.71)
    assert PRODIGY_PLATEAU_OVER_ADAMW > DADAPTATION_PLATEAU_OVER_ADAMW
    assert derive_settings(1e-2).unet_lr == pytest.approx(1e-2 / 0.56)


def test_prodigy_probe_plateau_is_taken_per_its_factor():
    settings = derive_settings(2e-4, probe_optimizer="Prodigy")
    assert settings.unet_lr == pytest.approx(2e-4 * PROBE_FACTORS["prodigy"])


@pytest.mark.parametrize("name", ["DAdaptation", "dadaptadam", "prodigy"])
def test_probe_optimizer_names_are_case_insensitive(name):
    assert derive_settings(1e-4, probe_optimizer=name).unet_lr > 0


def test_prodigy_final_run_settings_follow_the_authors_diffusion_advice():
    prodigy = derive_settings(1e-4).prodigy
    assert prodigy == {
        "lr": 1.0, "d_coef": 1.0, "use_bias_correction": True, "safeguard_warmup": True,
        "weight_decay": 0.01, "betas": (0.9, 0.99), "decouple": True,
    }
    assert optimizer_entry("Prodigy").run_settings(d_coef=0.5)["d_coef"] == 0.5
    prodigy["lr"] = 2.0  # each result owns its dict
    assert derive_settings(1e-4).prodigy["lr"] == 1.0


def test_settings_are_probe_json_s_frozen_derived_part():
    import pydantic

    settings = derive_settings(1e-4)
    assert isinstance(settings, DerivedLrs)  # what probe.json holds, no second copy of its fields
    with pytest.raises(pydantic.ValidationError):
        settings.unet_lr = 1.0  # type: ignore[misc]
    data = settings.model_dump()
    unet_lr = 1e-4 * PROBE_FACTORS["dadaptation"]
    assert data["unet_lr"] == pytest.approx(unet_lr)
    assert data["text_encoder_lr_range"] == pytest.approx((unet_lr / 10, unet_lr / 2))
    assert "** 0.5, dim ignored" in data["rescale_rule"]


@pytest.mark.parametrize("bad", [0.0, -1e-4, math.nan, math.inf, None])
def test_unusable_plateau_value_is_a_one_line_config_error(bad):
    with pytest.raises(ConfigError) as err:
        derive_settings(bad)
    assert "\n" not in str(err.value) and "probe" in str(err.value)


def test_unknown_probe_optimizer_is_rejected():
    with pytest.raises(ConfigError, match="AdamW"):
        derive_settings(1e-4, probe_optimizer="AdamW")


# lr, (from_dim, from_alpha), (to_dim, to_alpha), expected
RESCALE_TABLE = [
    (1e-4, (8, 8), (8, 8), 1e-4),  # same network: same lr
    (1e-4, (16, 4), (16, 4), 1e-4),
    (1e-4, (8, 8), (8, 4), 2e-4),  # alpha = dim/2 halves the output scale: twice the lr
    (1e-4, (8, 4), (8, 8), 5e-5),
    (1e-4, (8, 8), (32, 32), 1e-4),  # alpha = dim keeps scale 1 at any dim
    (1e-4, (8, 1), (32, 1), 4e-4),  # fixed alpha, 4x dim: 4x smaller scale, 4x the lr
    (1e-4, (4, 1), (8, 8), 1e-4 / 4),  # scale 1/4 -> 1
]


@pytest.mark.parametrize("lr, source, target, expected", RESCALE_TABLE)
def test_alpha_over_dim_rescaling(lr, source, target, expected):
    assert rescale_lr(lr, *source, *target, rule="alpha_over_dim") == pytest.approx(expected)


# the default rule (benchmarks/probe_rescale.py): lr ~ alpha^-1/2, whatever the dim
SQRT_ALPHA_TABLE = [
    (1e-4, (8, 8), (8, 8), 1e-4),
    (1e-4, (8, 8), (32, 8), 1e-4),  # dim alone does not move the lr
    (1e-4, (8, 8), (8, 2), 2e-4),  # 4x lower alpha: 2x the lr
    (1e-4, (8, 8), (32, 32), 5e-5),  # alpha = dim, 4x both: half the lr (alpha_over_dim says 1x)
    (1e-4, (8, 8), (4, 1), 1e-4 * math.sqrt(8)),
    (1e-4, (16, 4), (64, 16), 5e-5),
]


@pytest.mark.parametrize("lr, source, target, expected", SQRT_ALPHA_TABLE)
def test_sqrt_alpha_rescaling_is_the_default(lr, source, target, expected):
    assert DEFAULT_RESCALE_RULE == "sqrt_alpha"
    assert rescale_lr(lr, *source, *target) == pytest.approx(expected)
    assert rescale_lr(lr, *source, *target, rule="sqrt_alpha") == pytest.approx(expected)


@pytest.mark.parametrize("rule", ["sqrt_alpha", "alpha_over_dim", "none"])
def test_rescaling_there_and_back_is_the_identity(rule):
    there = rescale_lr(3e-4, 8, 4, 32, 16, rule=rule)
    assert rescale_lr(there, 32, 16, 8, 4, rule=rule) == pytest.approx(3e-4)


def test_rescale_rule_none_keeps_the_lr_and_unknown_rules_fail():
    assert rescale_lr(1e-4, 8, 8, 8, 1, rule="none") == 1e-4
    with pytest.raises(ConfigError, match="sqrt_alpha, alpha_over_dim, none"):
        rescale_lr(1e-4, 8, 8, 8, 1, rule="sqrt")


@pytest.mark.parametrize("args", [(1e-4, 0, 8, 8, 8), (1e-4, 8, 8, 8, -1), (0, 8, 8, 8, 8)])
def test_rescale_rejects_non_positive_inputs(args):
    with pytest.raises(ConfigError):
        rescale_lr(*args)
