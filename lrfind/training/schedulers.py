"""Learning-rate schedulers by kohya's names, built by diffusers' `get_scheduler`.

The schedule is stepped once per optimizer step. Names are kohya's `--lr_scheduler` values:
constant, constant_with_warmup, linear, cosine, cosine_with_restarts (`num_cycles` hard restarts),
polynomial (`power`; decays to diffusers' lr_end = 1e-7 scaled by the group's lr).
Like kohya, `constant` refuses warmup steps: use constant_with_warmup for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lrfind.errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SchedulerEntry:
    diffusers_name: str  # a value of diffusers.optimization.SchedulerType
    takes_warmup: bool


_SCHEDULERS: dict[str, SchedulerEntry] = {
    "constant": SchedulerEntry("constant", takes_warmup=False),
    "constant_with_warmup": SchedulerEntry("constant_with_warmup", takes_warmup=True),
    "linear": SchedulerEntry("linear", takes_warmup=True),
    "cosine": SchedulerEntry("cosine", takes_warmup=True),
    "cosine_with_restarts": SchedulerEntry("cosine_with_restarts", takes_warmup=True),
    "polynomial": SchedulerEntry("polynomial", takes_warmup=True),
}


def scheduler_names() -> list[str]:
    """The scheduler names lrfind accepts (pure: imports no torch)."""
    return list(_SCHEDULERS)


def _entry(name: str) -> SchedulerEntry:
    key = name.strip().lower()
    if key not in _SCHEDULERS:
        raise ConfigError(f"unknown lr scheduler {name!r}; use one of {', '.join(scheduler_names())}")
    return _SCHEDULERS[key]


def check_scheduler_args(
    name: str,
    *,
    num_training_steps: int,
    num_warmup_steps: int = 0,
    num_cycles: int = 1,
    power: float = 1.0,
) -> None:
    """Raise ConfigError for an unknown name or impossible step counts (pure: imports no torch)."""
    entry = _entry(name)
    if num_training_steps < 1:
        raise ConfigError(f"the run has {num_training_steps} training steps; it needs at least 1")
    if num_warmup_steps < 0:
        raise ConfigError(f"--lr-warmup-steps is {num_warmup_steps}; it must be >= 0")
    if num_warmup_steps and not entry.takes_warmup:
        raise ConfigError(
            f"lr scheduler {name} takes no warmup ({num_warmup_steps} steps given); "
            f"use --lr-scheduler constant_with_warmup or --lr-warmup-steps 0"
        )
    if num_warmup_steps > num_training_steps:
        raise ConfigError(
            f"--lr-warmup-steps {num_warmup_steps} is more than the {num_training_steps} training "
            f"steps; lower the warmup or train longer"
        )
    if num_cycles < 1:
        raise ConfigError(f"--lr-scheduler-num-cycles is {num_cycles}; it must be >= 1")
    if not power > 0:
        raise ConfigError(f"--lr-scheduler-power is {power}; it must be > 0")


def build_scheduler(
    name: str,
    optimizer: "torch.optim.Optimizer",
    *,
    num_training_steps: int,
    num_warmup_steps: int = 0,
    num_cycles: int = 1,
    power: float = 1.0,
) -> "torch.optim.lr_scheduler.LambdaLR":
    """The scheduler `name` over `optimizer`; step it once per optimizer step."""
    check_scheduler_args(
        name,
        num_training_steps=num_training_steps,
        num_warmup_steps=num_warmup_steps,
        num_cycles=num_cycles,
        power=power,
    )
    from diffusers.optimization import get_scheduler

    try:
        return get_scheduler(
            _entry(name).diffusers_name,
            optimizer,
            num_warmup_steps=num_warmup_steps,
            num_training_steps=num_training_steps,
            num_cycles=num_cycles,
            power=power,
        )
    except ValueError as err:  # e.g. polynomial: lr must exceed diffusers' lr_end of 1e-7
        raise ConfigError(f"lr scheduler {name}: {err}") from None
