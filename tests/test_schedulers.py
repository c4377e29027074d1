"""LR schedulers: trajectories against hand-computed values; bad names and step counts fail clearly."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from lrfind.errors import ConfigError
from lrfind.training.schedulers import build_scheduler, check_scheduler_args, scheduler_names

STEPS = 10


def _lr_trajectory(name: str, steps: int = STEPS, unet_lr: float = 1.0, **kwargs) -> list[list[float]]:
    """[unet lr, text-encoder lr] in effect at each optimizer step 0..steps (one past the end)."""
    unet, text_encoder = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(
        [{"params": unet.parameters(), "lr": unet_lr}, {"params": text_encoder.parameters(), "lr": unet_lr / 10}],
        lr=unet_lr,  # as build_optimizer does: diffusers' polynomial floor is relative to defaults["lr"]
    )
    scheduler = build_scheduler(name, optimizer, num_training_steps=steps, **kwargs)
    lrs = []
    for _ in range(steps + 1):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return lrs


def _unet(lrs):
    return [pair[0] for pair in lrs]


def test_names():
    assert scheduler_names() == [
        "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"
    ]


def test_scheduler_names_import_no_torch():
    code = "import sys, lrfind.training.schedulers as s; s.scheduler_names(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_constant_keeps_both_group_lrs():
    lrs = _lr_trajectory("constant", unet_lr=1e-4)
    assert all(pair == pytest.approx([1e-4, 1e-5]) for pair in lrs)


def test_constant_with_warmup_ramps_linearly_then_holds():
    lrs = _unet(_lr_trajectory("constant_with_warmup", num_warmup_steps=4))
    assert lrs[:6] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    assert lrs[-1] == 1.0


def test_linear_warmup_then_decay_to_zero():
    lrs = _unet(_lr_trajectory("linear", num_warmup_steps=2))
    # warmup k/2; then (10 - k) / (10 - 2)
    assert lrs[1] == pytest.approx(0.5)
    assert lrs[2] == pytest.approx(1.0)
    assert lrs[6] == pytest.approx(0.5)
    assert lrs[9] == pytest.approx(0.125)
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)


def test_cosine_midpoint_is_half_and_text_encoder_scales_alike():
    lrs = _lr_trajectory("cosine")
    unet = _unet(lrs)
    assert unet[0] == pytest.approx(1.0)
    assert unet[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))  # 0.9045
    assert unet[5] == pytest.approx(0.5)
    assert unet[10] == pytest.approx(0.0, abs=1e-12)
    assert [pair[1] for pair in lrs] == pytest.approx([u / 10 for u in unet])


def test_cosine_with_two_restarts():
    lrs = _unet(_lr_trajectory("cosine_with_restarts", num_cycles=2))
    # 0.5 * (1 + cos(pi * ((2 * k / 10) % 1)))
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[4] == pytest.approx(0.5 * (1 + math.cos(0.8 * math.pi)))  # 0.0955, end of cycle 1
    assert lrs[5] == pytest.approx(1.0)  # the restart
    assert lrs[7] == pytest.approx(0.5 * (1 + math.cos(0.4 * math.pi)))  # 0.6545
    assert lrs[10] == 0.0


def test_cosine_with_one_cycle_differs_from_two():
    one = _unet(_lr_trajectory("cosine_with_restarts", num_cycles=1))
    assert one[5] == pytest.approx(0.5)


def test_polynomial_power_two():
    lrs = _unet(_lr_trajectory("polynomial", power=2.0))
    lr_end = 1e-7  # diffusers' default floor
    for step in (0, 3, 5, 8):
        assert lrs[step] == pytest.approx((1 - lr_end) * (1 - step / STEPS) ** 2 + lr_end)
    assert lrs[5] == pytest.approx(0.25)
    assert lrs[10] == pytest.approx(lr_end)


def test_polynomial_power_one_is_linear():
    lrs = _unet(_lr_trajectory("polynomial", num_warmup_steps=2, power=1.0))
    assert lrs[1] == pytest.approx(0.5)
    assert lrs[6] == pytest.approx(0.5, abs=1e-6)


def test_names_are_case_insensitive():
    assert _unet(_lr_trajectory("Cosine"))[5] == pytest.approx(0.5)


def test_unknown_name_lists_the_names():
    with pytest.raises(ConfigError, match="unknown lr scheduler 'adafactor'; use one of constant, "):
        check_scheduler_args("adafactor", num_training_steps=10)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("linear", {"num_training_steps": 10, "num_warmup_steps": 11}, "more than the 10 training steps"),
        ("constant", {"num_training_steps": 10, "num_warmup_steps": 2}, "constant_with_warmup"),
        ("cosine", {"num_training_steps": 0}, "at least 1"),
        ("cosine", {"num_training_steps": 10, "num_warmup_steps": -1}, ">= 0"),
        ("cosine_with_restarts", {"num_training_steps": 10, "num_cycles": 0}, "num-cycles"),
        ("polynomial", {"num_training_steps": 10, "power": 0.0}, "power"),
    ],
)
def test_impossible_step_counts_are_config_errors_before_building(name, kwargs, message):
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=1e-4)
    with pytest.raises(ConfigError, match=message) as info:
        build_scheduler(name, optimizer, **kwargs)
    assert "\n" not in str(info.value)
    assert optimizer.param_groups[0]["lr"] == 1e-4  # nothing was attached


def test_warmup_equal_to_total_is_allowed():
    lrs = _unet(_lr_trajectory("linear", num_warmup_steps=STEPS))
    assert lrs[5] == pytest.approx(0.5)


def test_polynomial_below_diffusers_floor_is_a_config_error():
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=1e-8)
    with pytest.raises(ConfigError, match="lr scheduler polynomial: lr_end"):
        build_scheduler("polynomial", optimizer, num_training_steps=10)
