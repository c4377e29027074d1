"""What lrfind knows about one optimizer, as one frozen object. Pure: no torch, not even lazily.

Each optimizer module (adamw.py, lion.py, ...) defines one `OptimizerEntry`; lrfind.optimizers.registry
lists them. The builder is data (`class_path`, `needs_cuda`): lrfind.training.optimizers imports the
class only when a run builds it, so that pure numerics (the study's space, the probe's derivation)
read names, factors and lr rules without pulling torch into their import graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional


@dataclass(frozen=True)
class LrInputs:
    """What a study trial's lr rule starts from (lrfind.study.trial_values)."""

    probe_lr: float  # the probe's unet_lr (an AdamW lr), rescaled to the trial's network dim/alpha/type
    multiplier: float  # the trial's lr_multiplier (Prodigy: its d_coef)
    text_encoder_fraction: float  # text_encoder_lr / unet_lr for optimizers with an lr to pick
    weight_decay: float  # the space's AdamW weight decay


@dataclass(frozen=True)
class OptimizerValues:
    """What a trial trains with: the two lrs and the optimizer args (JSON/TOML-ready)."""

    unet_lr: float
    text_encoder_lr: float  # used only when the text encoder trains
    optimizer_args: dict


LrRule = Callable[[LrInputs], OptimizerValues]
Summary = Callable[[float, Mapping[str, Any]], str]  # (unet_lr, optimizer args) -> the text


def _frozen(args: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(args))


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer: its names, how to build it, and the factors and rules lrfind applies to it."""

    name: str  # kohya sd-scripts' --optimizer_type spelling, lrfind's canonical name ("DAdaptAdam")
    class_path: str  # "module:Class", imported only when a run builds it (lrfind.training.optimizers)
    state_slots: int  # fp32 tensors per trained parameter in its state (the disk-space estimate)
    summary: Summary  # one phrase for the recommendation paragraph (lrfind.study.recommend)
    aliases: tuple[str, ...] = ()  # other spellings accepted (case-insensitive), e.g. "DAdaptation"
    adaptive: bool = False  # estimates its own step size d; lr is a multiplier (kohya's 1.0)
    needs_cuda: bool = False  # refused before training when no CUDA GPU is there
    fused_kernel: bool = False  # takes fused=True (one pass over all tensors) on CPU/CUDA tensors
    default_lr: Optional[float] = None  # the lr lrfind runs it at when it has none to pick (adaptive: 1.0)
    default_args: Mapping[str, Any] = field(default_factory=dict)  # the args lrfind runs it with
    plateau_factor: Optional[float] = None  # as the probe optimizer: unet_lr = plateau d*lr x this
    lr_divisor: Optional[float] = None  # its lr = the probe's (AdamW) unet_lr / this; None: no lr to pick
    weight_decay_factor: float = 1.0  # its weight decay = AdamW's x this (Lion: same lr x wd)
    lr_rule: Optional[LrRule] = None  # a study trial's lrs and args; None: not offered in a study

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_args", _frozen(self.default_args))  # shared: nobody edits it

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every accepted name, lower-case: the canonical one first."""
        return (self.name.lower(), *(alias.lower() for alias in self.aliases))

    def run_settings(self, **overrides: Any) -> dict:
        """{"lr": default_lr, **default_args, **overrides}: a fresh dict each call (callers edit it)."""
        lr = {} if self.default_lr is None else {"lr": self.default_lr}
        return {**lr, **self.default_args, **overrides}


def lr_summary(name: str) -> Summary:
    """The summary of an optimizer with an lr: "Lion at unet_lr 1e-4, weight decay 0.03"."""

    def summary(unet_lr: float, args: Mapping[str, Any]) -> str:
        wd = args.get("weight_decay")
        return f"{name} at unet_lr {unet_lr:.3g}" + (f", weight decay {wd:g}" if wd is not None else "")

    return summary


def scaled_lr_rule(lr_divisor: float, weight_decay_factor: float) -> LrRule:
    """The trial rule of an optimizer with an lr: unet_lr = probe lr x multiplier / lr_divisor,
    text_encoder_lr = unet_lr x fraction, weight_decay = the space's x weight_decay_factor."""

    def rule(inputs: LrInputs) -> OptimizerValues:
        unet_lr = inputs.probe_lr * inputs.multiplier / lr_divisor
        return OptimizerValues(unet_lr, unet_lr * inputs.text_encoder_fraction,
                               {"weight_decay": inputs.weight_decay * weight_decay_factor})

    return rule
