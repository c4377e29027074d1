"""The network types lrfind knows: one module each, listed here in order.

Adding a type is one module defining an `ENTRY` (lrfind.network.types.entry.NetworkTypeEntry) and
one line in `_BUILT_IN` below. The list is written out rather than discovered, as the optimizers'
is: its order is what users see (a space's error, network_type_names()), and `type_of` asks the
types of one module in this order.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from lrfind.errors import ConfigError
from lrfind.network.types import locon, loha, lokr, lora, lycoris_locon
from lrfind.network.types.entry import NetworkTypeEntry

_BUILT_IN = (
    lora.ENTRY,
    locon.ENTRY,
    lycoris_locon.ENTRY,
    loha.ENTRY,
    lokr.ENTRY,
)

_ENTRIES: dict[str, NetworkTypeEntry] = {}  # name -> entry, in registration order


def register_network_type(entry: NetworkTypeEntry) -> NetworkTypeEntry:
    """Add `entry`; a ConfigError if its name is taken, or if it builds or checks its module's
    args otherwise than the types already registered for that module (one module, one builder)."""
    if entry.name in _ENTRIES:
        raise ConfigError(f"network type {entry.name}: the name is taken")
    for known in _ENTRIES.values():
        if known.network_module == entry.network_module and (known.builder, known.args_checker) != (
                entry.builder, entry.args_checker):
            raise ConfigError(f"network type {entry.name}: {entry.network_module} is built by {known.builder} "
                              f"and checked by {known.args_checker} (type {known.name}); use the same")
    _ENTRIES[entry.name] = entry
    return entry


for _entry in _BUILT_IN:
    register_network_type(_entry)


def network_types() -> list[NetworkTypeEntry]:
    """Every registered type, in registration order."""
    return list(_ENTRIES.values())


def network_type_names() -> list[str]:
    """The names a space's network_type may use, in registration order."""
    return list(_ENTRIES)


def conv_type_names() -> list[str]:
    """The types whose 3x3 convs a space's conv_dim_fraction sets, in registration order."""
    return [entry.name for entry in _ENTRIES.values() if entry.adapts_convs]


def network_type(name: str) -> NetworkTypeEntry:
    """The entry of `name` (exact); ConfigError naming the known ones."""
    if name not in _ENTRIES:
        raise ConfigError(f"network kind {name!r}: use one of {', '.join(_ENTRIES)}")
    return _ENTRIES[name]


def network_modules() -> list[str]:
    """kohya's --network_module of every type, once each, in registration order."""
    return list(dict.fromkeys(entry.network_module for entry in _ENTRIES.values()))


def _module_types(network_module: str) -> list[NetworkTypeEntry]:
    types = [entry for entry in _ENTRIES.values() if entry.network_module == network_module]
    if not types:
        raise ConfigError(f"--network-module {network_module}: not available; use one of "
                          f"{', '.join(sorted(network_modules()))}")
    return types


def type_of(network_module: str, network_args: Mapping[str, Any]) -> NetworkTypeEntry:
    """Which type a TrainConfig's network_module / network_args are; ConfigError when none is."""
    types = _module_types(network_module)
    for entry in types:
        if entry.is_type(network_args):
            return entry
    args = " ".join(f"{k}={v}" for k, v in network_args.items())
    raise ConfigError(f"--network-module {network_module} --network-args {args}: no network type of lrfind's; "
                      f"{network_module} trains {', '.join(entry.name for entry in types)}")


def check_network_args(network_module: str, network_args: Mapping[str, object]) -> None:
    """ConfigError (one line: the module or arg, the accepted values) unless the module takes the args."""
    _module_types(network_module)[0].check_args(network_args)  # one checker per module (register_network_type)


def space_arg_types(dimension: str) -> list[NetworkTypeEntry]:
    """The types that have a space arg of that dimension name (e.g. "lokr_factor": LoKr)."""
    return [entry for entry in _ENTRIES.values() if entry.space_arg(dimension) is not None]


# The network_module a TrainConfig or ProbeConfig accepts (pydantic checks it, the CLI lists them).
NetworkModuleName = Literal[tuple(network_modules())]  # type: ignore[valid-type]
