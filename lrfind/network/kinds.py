"""A network type's TrainConfig values (kohya's --network_module / --network_args), and its label. Pure.

The types themselves (lora, locon, lycoris_locon, loha, lokr: module, fixed args, convs, own args,
lr factor) are lrfind.network.types, one module each; this turns a study trial's type and
dimensions into the options a run trains with.

Conv layers get conv_dim = round(conv_dim_fraction x dim) (at least 1) and conv_alpha = the same
alpha/dim fraction as the linear layers. Without a fraction each type keeps its own default: kohya's
LoCon then uses conv_dim = dim (lycoris' default, so both LoCons are comparable), the LyCORIS types
pass no conv_dim (lycoris: conv_dim = dim, conv_alpha = alpha).
"""

from __future__ import annotations

from typing import Any, Optional

from lrfind.errors import ConfigError
from lrfind.network.types import network_type, network_type_names, network_types, type_of


def conv_values(dim: int, alpha: float, conv_dim_fraction: float) -> tuple[int, float]:
    """(conv_dim, conv_alpha) for a fraction of dim; conv_alpha keeps alpha/dim (3 digits)."""
    conv_dim = max(1, round(conv_dim_fraction * dim))
    return conv_dim, float(f"{conv_dim * alpha / dim:.3g}")


def network_values(kind: str, dim: int, alpha: float, conv_dim_fraction: Optional[float] = None,
                   **space_values: Optional[int]) -> dict[str, Any]:
    """TrainConfig's network_module and network_args for one type of network.

    `space_values` are a trial's type-own dimensions by name (lokr_factor=4): each sets its type's
    network arg; those of other types, and None, set nothing.
    """
    known = {arg.dimension for entry in network_types() for arg in entry.space_args}
    unknown = sorted(set(space_values) - known)
    if unknown:
        raise ConfigError(f"network_values: {unknown[0]!r} is no network type's space dimension; "
                          f"use one of {', '.join(sorted(known))}")
    entry = network_type(kind)
    args: dict[str, Any] = dict(entry.fixed_args)
    if entry.adapts_convs and (entry.convs_by_default or conv_dim_fraction is not None):
        conv_dim, conv_alpha = conv_values(dim, alpha, 1.0 if conv_dim_fraction is None else conv_dim_fraction)
        args.update(conv_dim=conv_dim, conv_alpha=conv_alpha)
    for arg in entry.space_args:
        if space_values.get(arg.dimension) is not None:
            args[arg.network_arg] = int(space_values[arg.dimension])
    return {"network_module": entry.network_module, "network_args": args}


def type_label(kind: str) -> str:
    """The label of a type named `kind` ("LoKr"); the name itself for one lrfind has no type of."""
    return network_type(kind).label if kind in network_type_names() else kind


def network_label(network_module: str, network_args: dict) -> str:
    """A short human name: "LoRA", "LoCon (kohya)", "LoHa", ...; the module's name for a module or
    args no type is (a hand-edited file)."""
    try:
        return type_of(network_module, network_args).label
    except ConfigError:
        return network_module
