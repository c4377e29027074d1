"""Optimizers by kohya's names, as a registry of small builders.

Each builder returns the optimizer *class* (importing its package lazily, so that listing names or
validating a config imports no torch); `build_optimizer` validates the param groups and the
optimizer args once, for every optimizer alike, and constructs it.

Names follow kohya sd-scripts' `--optimizer_type` and are looked up case-insensitively:
AdamW, AdamW8bit, Lion, DAdaptAdam, DAdaptLion, Prodigy. The alias "DAdaptation" means DAdaptAdam
here. Note: older kohya versions mapped "DAdaptation" to `dadaptation.DAdaptAdam` (the folk
recipe's "DAdaptation, lr=1.0" comes from then); current kohya maps it to the experimental
`DAdaptAdamPreprint`. lrfind keeps the maintained DAdaptAdam.

D-Adaptation and Prodigy estimate one step size `d` shared by all param groups; the groups' lrs
only scale it, and both libraries raise on step 1 when two groups have different non-zero lrs.
`build_optimizer` rejects that up front with a ConfigError instead.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from lrfind.errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class OptimizerEntry:
    name: str  # canonical spelling, e.g. "DAdaptAdam"
    load_class: Callable[[], type]  # imports lazily; raises ConfigError where unusable
    adaptive: bool  # estimates its own step size d (lr is a multiplier, typically 1.0)


_REGISTRY: dict[str, OptimizerEntry] = {}  # lower-case name -> entry
_ALIASES: dict[str, str] = {"dadaptation": "dadaptadam"}  # lower-case alias -> lower-case name


def register_optimizer(name: str, *, adaptive: bool = False):
    """Decorator: register a function returning the optimizer class under kohya's `name`."""

    def decorate(load_class: Callable[[], type]) -> Callable[[], type]:
        _REGISTRY[name.lower()] = OptimizerEntry(name, load_class, adaptive)
        return load_class

    return decorate


@register_optimizer("AdamW")
def _adamw() -> type:
    import torch

    return torch.optim.AdamW


@register_optimizer("AdamW8bit")
def _adamw_8bit() -> type:
    import torch

    # bitsandbytes' 8-bit states need CUDA kernels; on CPU it either fails to import or fails on
    # the first step, so refuse before training starts.
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            "optimizer AdamW8bit needs the bitsandbytes package and a CUDA GPU; "
            "install bitsandbytes on a GPU machine or use --optimizer-type AdamW"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            "optimizer AdamW8bit needs a CUDA GPU and none is available; use --optimizer-type AdamW"
        )
    try:
        import bitsandbytes
    except Exception as err:  # broken CUDA setups raise all sorts of errors at import
        raise ConfigError(
            f"optimizer AdamW8bit: bitsandbytes failed to import ({err}); use --optimizer-type AdamW"
        ) from None
    return bitsandbytes.optim.AdamW8bit


@register_optimizer("Lion")
def _lion() -> type:
    from lion_pytorch import Lion

    return Lion


@register_optimizer("DAdaptAdam", adaptive=True)
def _dadapt_adam() -> type:
    from dadaptation import DAdaptAdam

    return DAdaptAdam


@register_optimizer("DAdaptLion", adaptive=True)
def _dadapt_lion() -> type:
    from dadaptation import DAdaptLion

    return DAdaptLion


@register_optimizer("Prodigy", adaptive=True)
def _prodigy() -> type:
    from prodigyopt import Prodigy

    return Prodigy


def optimizer_names() -> list[str]:
    """Canonical names, in registration order (aliases not included)."""
    return [entry.name for entry in _REGISTRY.values()]


def _entry(name: str) -> OptimizerEntry:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        known = ", ".join(optimizer_names())
        raise ConfigError(
            f"unknown optimizer {name!r}; use one of {known} (DAdaptation is an alias of DAdaptAdam)"
        )
    return _REGISTRY[key]


def canonical_optimizer_name(name: str) -> str:
    """'adamw' -> 'AdamW', 'DAdaptation' -> 'DAdaptAdam'; ConfigError for unknown names."""
    return _entry(name).name


def is_adaptive(name: str) -> bool:
    """True for D-Adaptation and Prodigy, which estimate d and use lr as a multiplier."""
    return _entry(name).adaptive


def _shared_lr(entry: OptimizerEntry, param_groups: list[dict]) -> float:
    """The lr passed as the constructor default; checks every group's lr."""
    for index, group in enumerate(param_groups):
        label = group.get("name", f"group {index}")
        if "params" not in group or "lr" not in group:
            raise ConfigError(f"param group {label!r} needs 'params' and 'lr' (optimizer {entry.name})")
        if not float(group["lr"]) >= 0.0:
            raise ConfigError(f"learning rate for {label} is {group['lr']}; it must be >= 0")
    lrs = [float(group["lr"]) for group in param_groups]
    nonzero = sorted({lr for lr in lrs if lr > 0.0})
    if not nonzero:
        raise ConfigError(f"all learning rates are 0 for optimizer {entry.name}; set --learning-rate > 0")
    if entry.adaptive and len(nonzero) > 1:
        detail = ", ".join(f"{g.get('name', i)}={g['lr']}" for i, g in enumerate(param_groups))
        raise ConfigError(
            f"optimizer {entry.name} estimates one step size for all parameters and cannot use "
            f"different learning rates ({detail}); use the same lr, e.g. 1.0, for unet and text "
            f"encoder with DAdaptation/Prodigy (0 freezes a group)"
        )
    # The largest lr becomes optimizer.defaults["lr"], which diffusers' polynomial schedule reads.
    return nonzero[-1]


def _optimizer_kwargs(
    entry: OptimizerEntry,
    optimizer_class: type,
    weight_decay: float | None,
    betas: Any,
    extra: dict | None,
) -> dict:
    """Merge weight_decay/betas with --optimizer_args and check every key against the signature."""
    kwargs: dict[str, Any] = dict(extra or {})
    for key, value in (("weight_decay", weight_decay), ("betas", betas)):
        if value is None:
            continue
        if key in kwargs and kwargs[key] != value:
            raise ConfigError(
                f"{key} for optimizer {entry.name} is given twice ({value} and {kwargs[key]} in "
                f"optimizer args); give it once"
            )
        kwargs[key] = value
    if "betas" in kwargs and isinstance(kwargs["betas"], list):  # TOML has no tuples
        kwargs["betas"] = tuple(kwargs["betas"])
    parameters = inspect.signature(optimizer_class.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = sorted(set(parameters) - {"self", "params", "lr"})
    for key in kwargs:
        if key in ("params", "lr") or (key not in parameters and not takes_any):
            raise ConfigError(
                f"optimizer {entry.name} has no argument {key!r}; its optimizer args are "
                f"{', '.join(accepted)} (set learning rates with --learning-rate/--unet-lr)"
            )
    return kwargs


def build_optimizer(
    name: str,
    param_groups: list[dict],
    *,
    weight_decay: float | None = None,
    betas=None,
    extra: dict | None = None,
) -> "torch.optim.Optimizer":
    """Build the optimizer `name` over `param_groups` ({"params", "lr", "name"} each).

    `weight_decay` and `betas` left as None keep the library defaults (AdamW 0.01, the others 0).
    `extra` holds kohya's --optimizer_args, e.g. {"decouple": True, "d_coef": 2.0}.
    Raises ConfigError for unknown names or args, unequal lrs with an adaptive optimizer, values
    the optimizer rejects, or AdamW8bit without bitsandbytes and a CUDA GPU.
    """
    entry = _entry(name)
    default_lr = _shared_lr(entry, param_groups)
    optimizer_class = entry.load_class()
    kwargs = _optimizer_kwargs(entry, optimizer_class, weight_decay, betas, extra)
    groups = [dict(group) for group in param_groups]  # the caller's dicts stay untouched
    try:
        return optimizer_class(groups, lr=default_lr, **kwargs, **_fused_kwargs(entry, kwargs, groups))
    except (ValueError, TypeError, AssertionError) as err:
        raise ConfigError(f"optimizer {entry.name} rejected its arguments {kwargs}: {err}") from None


def _fused_kwargs(entry: OptimizerEntry, kwargs: dict, groups: list[dict]) -> dict:
    """AdamW's fused kernel (one pass over all tensors) unless the optimizer args pick a kernel.

    torch.optim.AdamW on the CPU otherwise loops over the parameters one by one: on the 256
    tensors of an SD 1.5 LoRA that step took 120 ms against 35 ms fused (benchmarks/RESULTS.md,
    cheap trials). The same update, to float rounding. Fused needs floating tensors on CPU or CUDA.
    """
    if entry.name != "AdamW" or {"fused", "foreach"} & set(kwargs):
        return {}
    params = [p for group in groups for p in group["params"]]
    if params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        return {"fused": True}
    return {}


def d_times_lr(optimizer: "torch.optim.Optimizer") -> dict[str, float]:
    """Group name -> d * lr for optimizers that estimate d (kohya's `lr/d*lr/<name>`), else {}.

    D-Adaptation and Prodigy keep the shared estimate in every param group as group["d"]; kohya
    logs d times the group's current (scheduled) lr. Groups without a "name" are "group<i>".
    """
    return {
        group.get("name", f"group{index}"): float(group["d"]) * float(group["lr"])
        for index, group in enumerate(optimizer.param_groups)
        if "d" in group
    }
