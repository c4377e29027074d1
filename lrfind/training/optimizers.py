"""Build an optimizer from its registry entry (lrfind.optimizers), by kohya's names.

`load_optimizer_class` imports the entry's class only here, when a run builds it (so listing names
or validating a config imports no torch); `build_optimizer` validates the param groups and the
optimizer args once, for every optimizer alike, and constructs it. Names are kohya sd-scripts'
`--optimizer_type`, looked up case-insensitively with their aliases (lrfind.optimizers.registry).

D-Adaptation and Prodigy estimate one step size `d` shared by all param groups; the groups' lrs
only scale it, and both libraries raise on step 1 when two groups have different non-zero lrs.
`build_optimizer` rejects that up front with a ConfigError instead.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import logging
from typing import TYPE_CHECKING, Any

from lrfind.errors import ConfigError
from lrfind.optimizers import OptimizerEntry, optimizer_entry
# re-exported: the training layer's callers and tests name optimizers through this module
from lrfind.optimizers import canonical_optimizer_name, is_adaptive, optimizer_names  # noqa: F401

if TYPE_CHECKING:
    import torch

_log = logging.getLogger(__name__)


def load_optimizer_class(entry: OptimizerEntry) -> type:
    """The entry's class, imported now; ConfigError where its package or a CUDA GPU is missing."""
    module_name, _, class_name = entry.class_path.partition(":")
    package = module_name.split(".")[0]
    if importlib.util.find_spec(package) is None:
        where = " and a CUDA GPU" if entry.needs_cuda else ""
        on = " on a GPU machine" if entry.needs_cuda else ""
        raise ConfigError(f"optimizer {entry.name} needs the {package} package{where}; "
                          f"install {package}{on} or use --optimizer-type AdamW")
    if entry.needs_cuda:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"optimizer {entry.name} needs a CUDA GPU and none is available; "
                              "use --optimizer-type AdamW")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # broken CUDA setups raise all sorts of errors at import
        raise ConfigError(f"optimizer {entry.name}: {package} failed to import ({err}); "
                          "use --optimizer-type AdamW") from None
    return getattr(module, class_name)


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
    entry = optimizer_entry(name)
    default_lr = _shared_lr(entry, param_groups)
    optimizer_class = load_optimizer_class(entry)
    kwargs = _optimizer_kwargs(entry, optimizer_class, weight_decay, betas, extra)
    groups = [dict(group) for group in param_groups]  # the caller's dicts stay untouched
    printed = io.StringIO()
    try:
        # Prodigy and D-Adaptation print() "Using decoupled weight decay": library code in lrfind
        # does not print, so it goes to lrfind's log
        with contextlib.redirect_stdout(printed):
            return optimizer_class(groups, lr=default_lr, **kwargs, **_fused_kwargs(entry, kwargs, groups))
    except (ValueError, TypeError, AssertionError) as err:
        raise ConfigError(f"optimizer {entry.name} rejected its arguments {kwargs}: {err}") from None
    finally:
        if printed.getvalue().strip():
            _log.info("%s: %s", entry.name, printed.getvalue().strip())


def _fused_kwargs(entry: OptimizerEntry, kwargs: dict, groups: list[dict]) -> dict:
    """The fused kernel (one pass over all tensors; AdamW's, lrfind.optimizers.adamw) unless the
    optimizer args pick a kernel. The same update, to float rounding. Fused needs floating tensors
    on CPU or CUDA.
    """
    if not entry.fused_kernel or {"fused", "foreach"} & set(kwargs):
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
