"""What lrfind knows about one network type, as one frozen object. Pure: no torch, not even lazily.

A network type is one kind of network a run trains and a study chooses between: kohya's
`--network_module` plus the `--network_args` that make it that kind (networks.lora with conv_dim
is kohya's LoCon; lycoris.kohya's `algo`). Each type module (lora.py, loha.py, ...) defines one
`ENTRY`; lrfind.network.types.registry lists them. How to build and how to check it are dotted
paths ("module:function"), imported only when a run attaches the network or a config is checked,
so that the study's space and the probe's derivation read names, labels and lr factors without
pulling torch (or lycoris) into their import graph.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

# The clients that load a type's files (docs/networks.md, "Sampling and where files load").
A1111 = "A1111 WebUI >= 1.5"
COMFYUI = "ComfyUI"
DIFFUSERS = "diffusers"

ArgsTest = Callable[[Mapping[str, Any]], bool]  # network_args of the type's module -> whether they are this type


@dataclass(frozen=True)
class SpaceArg:
    """A --network-args key of one type that a study space searches as a dimension of its own.

    The space names it as a field (lrfind.study.space: SearchSpace and TrialParams both have one per
    dimension); Optuna asks it only of the trials of the types that have it.
    """

    dimension: str  # the space's and Optuna's parameter name, e.g. "lokr_factor"
    network_arg: str  # the --network_args key it sets, e.g. "factor"
    minimum: int  # the lowest whole number a space may give
    rule: str  # the space's error for a lower value, before ", got N"


def resolve(path: str) -> Callable:
    """The function a "module:function" path names, imported now."""
    module_name, _, name = path.partition(":")
    return getattr(importlib.import_module(module_name), name)


@dataclass(frozen=True)
class NetworkTypeEntry:
    """One network type: its names, the kohya options that make it, and what lrfind measured of it."""

    name: str  # a space's network_type and a study's stored parameter, e.g. "lokr"
    label: str  # a short human name for reports and the recommendation, e.g. "LoKr"
    network_module: str  # kohya's --network_module
    is_type: ArgsTest  # whether network_args of `network_module` are this type (pure, no validation)
    # The best AdamW lr of this type / LoRA's at the same dim and alpha, each type at its defaults:
    # measured by benchmarks/probe_rescale.py --networks on the tiny model, dim 8 / alpha 8, 100 steps,
    # a x1.41 grid refined by a parabola (benchmarks/RESULTS.md, "Network type"; 2 significant digits).
    # lrfind.probe.derive.network_lr_factor reads it; a study trial's lr is x its factor / the probe's.
    lr_factor: float
    builder: str  # "module:function" (components, spec, seed) -> Network; imported when a run attaches it
    args_checker: str  # "module:function" (network_args) -> ConfigError naming a bad arg; imported when called
    kohya_note: str  # export-kohya's comment beside network_module
    fixed_args: Mapping[str, str] = field(default_factory=dict)  # --network_args every run of it has, e.g. algo
    adapts_convs: bool = False  # its 3x3 convs take conv_dim / conv_alpha (a space's conv_dim_fraction sets them)
    convs_by_default: bool = False  # conv_dim = dim even without a fraction (conv_dim is what makes kohya's LoCon)
    space_args: tuple[SpaceArg, ...] = ()  # its own args a study space may search
    clients: tuple[str, ...] = ()  # the clients that load its files (A1111, COMFYUI, DIFFUSERS above)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed_args", MappingProxyType(dict(self.fixed_args)))  # shared: nobody edits it

    def space_arg(self, dimension: str) -> Optional[SpaceArg]:
        """Its SpaceArg of that dimension name; None when the type has no such arg."""
        return next((arg for arg in self.space_args if arg.dimension == dimension), None)

    def build(self) -> Callable:
        """The function that attaches a fresh network of this type (imports torch and its package)."""
        return resolve(self.builder)

    def check_args(self, network_args: Mapping[str, object]) -> None:
        """ConfigError (one line: the arg, the accepted values) unless its module accepts the args."""
        resolve(self.args_checker)(network_args)
