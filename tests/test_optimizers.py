"""Optimizer registry: every optimizer trains a toy problem; bad names, args and lrs fail clearly."""

from __future__ import annotations

import pytest
import torch

from lrfind.errors import ConfigError
from lrfind.training.optimizers import (
    build_optimizer,
    canonical_optimizer_name,
    d_times_lr,
    is_adaptive,
    optimizer_names,
)

# Per optimizer, an lr at which 3 steps clearly reduce the toy loss (adaptive ones: kohya's 1.0).
TRAINABLE = {"AdamW": 1e-2, "Lion": 1e-2, "DAdaptAdam": 1.0, "DAdaptLion": 1.0, "Prodigy": 1.0}


def _toy_problem(seed: int = 0):
    """Two Linear layers standing in for the unet and text-encoder groups, and a quadratic loss."""
    generator = torch.Generator().manual_seed(seed)
    unet, text_encoder = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    with torch.no_grad():
        for param in [*unet.parameters(), *text_encoder.parameters()]:
            param.copy_(torch.randn(param.shape, generator=generator))
    inputs = torch.randn(32, 8, generator=generator)
    targets = torch.randn(32, 4, generator=generator)

    def loss_fn() -> torch.Tensor:
        return ((unet(inputs) + text_encoder(inputs) - targets) ** 2).mean()

    return unet, text_encoder, loss_fn


def _groups(unet, text_encoder, unet_lr: float, text_encoder_lr: float) -> list[dict]:
    return [
        {"params": list(unet.parameters()), "lr": unet_lr, "name": "unet"},
        {"params": list(text_encoder.parameters()), "lr": text_encoder_lr, "name": "textencoder"},
    ]


def _train(optimizer, loss_fn, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    losses.append(loss_fn().item())
    return losses


def test_names_are_kohyas_canonical_spellings():
    assert optimizer_names() == ["AdamW", "AdamW8bit", "Lion", "DAdaptAdam", "DAdaptLion", "Prodigy"]


def test_name_lookups_import_no_torch():
    # The config and the CLI validate names before any heavy import.
    import subprocess
    import sys

    code = ("import sys, lrfind.training.optimizers as o; o.optimizer_names(); "
            "o.canonical_optimizer_name('dadaptation'); o.is_adaptive('Prodigy'); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_each_optimizer_takes_three_steps_and_reduces_the_loss(name):
    unet, text_encoder, loss_fn = _toy_problem()
    lr = TRAINABLE[name]
    optimizer = build_optimizer(name, _groups(unet, text_encoder, lr, lr))
    losses = _train(optimizer, loss_fn, steps=3)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    if not is_adaptive(name):
        assert losses[-1] < losses[0] * 0.99, losses
    assert [g["name"] for g in optimizer.param_groups] == ["unet", "textencoder"]


@pytest.mark.parametrize("name", ["DAdaptAdam", "DAdaptLion", "Prodigy"])
def test_adaptive_optimizers_find_their_step_size_at_lr_one(name):
    # They start from d0 = 1e-6, so 3 steps barely move; within 40 steps d has grown enough.
    unet, text_encoder, loss_fn = _toy_problem()
    optimizer = build_optimizer(name, _groups(unet, text_encoder, 1.0, 1.0))
    losses = _train(optimizer, loss_fn, steps=40)
    assert losses[-1] < 0.5 * losses[0], losses


def test_adamw_8bit_on_a_cpu_machine_is_a_clear_config_error():
    unet, text_encoder, _ = _toy_problem()
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present; AdamW8bit may work here")
    with pytest.raises(ConfigError, match="AdamW8bit.*--optimizer-type AdamW") as info:
        build_optimizer("adamw8bit", _groups(unet, text_encoder, 1e-4, 1e-4))
    assert "\n" not in str(info.value)


def test_adamw_8bit_with_bitsandbytes_but_no_gpu_is_a_clear_config_error(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real_find_spec(name, *a)
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    unet, text_encoder, _ = _toy_problem()
    with pytest.raises(ConfigError, match="AdamW8bit needs a CUDA GPU and none is available"):
        build_optimizer("AdamW8bit", _groups(unet, text_encoder, 1e-4, 1e-4))


@pytest.mark.parametrize("name", ["DAdaptAdam", "Prodigy"])
def test_d_times_lr_is_positive_and_grows_at_lr_one(name):
    unet, text_encoder, loss_fn = _toy_problem()
    optimizer = build_optimizer(name, _groups(unet, text_encoder, 1.0, 1.0))
    before = d_times_lr(optimizer)
    assert set(before) == {"unet", "textencoder"}
    assert before["unet"] == pytest.approx(1e-6)  # both libraries start from d0 = 1e-6
    _train(optimizer, loss_fn, steps=15)
    after = d_times_lr(optimizer)
    assert after["unet"] == after["textencoder"]  # one shared d
    assert after["unet"] > 10 * before["unet"] > 0


def test_d_times_lr_follows_the_scheduled_lr():
    unet, text_encoder, loss_fn = _toy_problem()
    optimizer = build_optimizer("DAdaptAdam", _groups(unet, text_encoder, 1.0, 1.0))
    _train(optimizer, loss_fn, steps=5)
    d = optimizer.param_groups[0]["d"]
    for group in optimizer.param_groups:
        group["lr"] = 0.5  # what a scheduler does
    assert d_times_lr(optimizer) == {"unet": pytest.approx(0.5 * d), "textencoder": pytest.approx(0.5 * d)}


def test_d_times_lr_is_empty_for_non_adaptive_optimizers():
    unet, text_encoder, loss_fn = _toy_problem()
    optimizer = build_optimizer("AdamW", _groups(unet, text_encoder, 1e-3, 1e-4))
    _train(optimizer, loss_fn, steps=1)
    assert d_times_lr(optimizer) == {}


@pytest.mark.parametrize("name", ["DAdaptAdam", "DAdaptLion", "Prodigy", "dadaptation"])
def test_unequal_group_lrs_with_an_adaptive_optimizer_fail_before_any_step(name):
    unet, text_encoder, _ = _toy_problem()
    with pytest.raises(ConfigError, match="same lr, e.g. 1.0, for unet and text encoder") as info:
        build_optimizer(name, _groups(unet, text_encoder, 1.0, 0.5))
    assert "unet=1.0" in str(info.value) and "textencoder=0.5" in str(info.value)


def test_a_zero_lr_group_is_allowed_with_an_adaptive_optimizer():
    # Both libraries accept lr 0 for a group (frozen); only different non-zero lrs break d.
    unet, text_encoder, loss_fn = _toy_problem()
    frozen_before = [p.detach().clone() for p in text_encoder.parameters()]
    optimizer = build_optimizer("Prodigy", _groups(unet, text_encoder, 1.0, 0.0))
    _train(optimizer, loss_fn, steps=3)
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, text_encoder.parameters()))


def test_different_group_lrs_are_fine_for_adamw_and_lion():
    unet, text_encoder, loss_fn = _toy_problem()
    optimizer = build_optimizer("Lion", _groups(unet, text_encoder, 1e-3, 1e-4))
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-4]
    assert optimizer.defaults["lr"] == 1e-3  # diffusers' polynomial schedule reads this


@pytest.mark.parametrize(
    "alias, canonical",
    [("adamw", "AdamW"), ("ADAMW8BIT", "AdamW8bit"), ("lion", "Lion"), ("dadaptadam", "DAdaptAdam"),
     ("DAdaptation", "DAdaptAdam"), ("dadaptation", "DAdaptAdam"), ("dAdApTlIoN", "DAdaptLion"),
     (" prodigy ", "Prodigy")],
)
def test_aliases_and_case_insensitive_lookup(alias, canonical):
    assert canonical_optimizer_name(alias) == canonical


def test_the_dadaptation_alias_builds_dadapt_adam():
    from dadaptation import DAdaptAdam

    unet, text_encoder, _ = _toy_problem()
    assert isinstance(build_optimizer("DAdaptation", _groups(unet, text_encoder, 1.0, 1.0)), DAdaptAdam)


def test_adaptive_flags():
    assert [is_adaptive(n) for n in optimizer_names()] == [False, False, False, True, True, True]
    assert is_adaptive("DAdaptation")


def test_unknown_name_lists_the_known_names():
    with pytest.raises(ConfigError, match="unknown optimizer 'SGDNesterov'.*AdamW, AdamW8bit, Lion"):
        canonical_optimizer_name("SGDNesterov")
    unet, text_encoder, _ = _toy_problem()
    with pytest.raises(ConfigError, match="Prodigy"):
        build_optimizer("adafactor", _groups(unet, text_encoder, 1.0, 1.0))


def test_optimizer_args_reach_the_optimizer():
    unet, text_encoder, _ = _toy_problem()
    extra = {"d_coef": 2.0, "use_bias_correction": True, "safeguard_warmup": True, "decouple": True,
             "weight_decay": 0.01, "betas": [0.9, 0.99]}
    optimizer = build_optimizer("Prodigy", _groups(unet, text_encoder, 1.0, 1.0), extra=extra)
    group = optimizer.param_groups[0]
    assert (group["d_coef"], group["use_bias_correction"], group["weight_decay"]) == (2.0, True, 0.01)
    assert group["betas"] == (0.9, 0.99)


def test_weight_decay_and_betas_keywords_and_library_defaults():
    unet, text_encoder, _ = _toy_problem()
    lion = build_optimizer("Lion", _groups(unet, text_encoder, 1e-4, 1e-4), weight_decay=0.1, betas=(0.95, 0.98))
    assert lion.param_groups[0]["weight_decay"] == 0.1 and lion.param_groups[0]["betas"] == (0.95, 0.98)
    adamw = build_optimizer("AdamW", _groups(unet, text_encoder, 1e-4, 1e-4))
    assert adamw.param_groups[0]["weight_decay"] == 0.01  # torch's default, as in kohya
    with pytest.raises(ConfigError, match="weight_decay for optimizer AdamW is given twice"):
        build_optimizer("AdamW", _groups(unet, text_encoder, 1e-4, 1e-4), weight_decay=0.1,
                        extra={"weight_decay": 0.2})


@pytest.mark.parametrize(
    "name, extra, key",
    [("AdamW", {"d_coef": 2.0}, "d_coef"), ("Lion", {"decouple": True}, "decouple"),
     ("DAdaptLion", {"use_bias_correction": True}, "use_bias_correction"),
     ("Prodigy", {"lr": 0.5}, "lr")],
)
def test_unknown_optimizer_args_name_the_key_and_the_optimizer(name, extra, key):
    unet, text_encoder, _ = _toy_problem()
    with pytest.raises(ConfigError, match=f"optimizer {name} has no argument '{key}'") as info:
        build_optimizer(name, _groups(unet, text_encoder, 1.0, 1.0), extra=extra)
    assert "\n" not in str(info.value)


def test_values_the_optimizer_rejects_are_config_errors():
    unet, text_encoder, _ = _toy_problem()
    with pytest.raises(ConfigError, match="optimizer DAdaptAdam rejected its arguments"):
        build_optimizer("DAdaptAdam", _groups(unet, text_encoder, 1.0, 1.0), extra={"d0": -1.0})


@pytest.mark.parametrize("lrs", [(0.0, 0.0), (-1e-4, 1e-4), (float("nan"), 1e-4)])
def test_impossible_learning_rates_are_config_errors(lrs):
    unet, text_encoder, _ = _toy_problem()
    with pytest.raises(ConfigError, match="learning rate"):
        build_optimizer("AdamW", _groups(unet, text_encoder, *lrs))


def test_caller_groups_are_not_modified():
    unet, text_encoder, _ = _toy_problem()
    groups = _groups(unet, text_encoder, 1e-4, 1e-4)
    snapshot = [sorted(g) for g in groups]
    build_optimizer("AdamW", groups, betas=(0.9, 0.98))
    assert [sorted(g) for g in groups] == snapshot


@pytest.mark.parametrize("name", ["Prodigy", "DAdaptAdam"])
def test_building_an_optimizer_prints_nothing(name, capsys, caplog):
    """Prodigy and D-Adaptation print "Using decoupled weight decay" with decouple=True and weight decay (their
    default in lrfind's settings); library code does not print, so it reaches lrfind's log."""
    import logging

    unet, text_encoder, _ = _toy_problem()
    with caplog.at_level(logging.INFO, logger="lrfind.training.optimizers"):
        build_optimizer(name, _groups(unet, text_encoder, 1.0, 1.0), weight_decay=0.01, extra={"decouple": True})
    assert capsys.readouterr().out == ""
    assert "decoupled weight decay" in caplog.text
