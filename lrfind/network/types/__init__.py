"""Everything lrfind knows about each network type, one module per type, and their registry.

Pure (no torch, not even lazily): the study's search space, the probe's derivation and the config
checks read it. lrfind.network.attach builds a run's network from these entries.
How to add one: docs/extending.md.
"""

from lrfind.network.types.entry import NetworkTypeEntry, SpaceArg
from lrfind.network.types.registry import (NetworkModuleName, check_network_args, conv_type_names,
                                           network_modules, network_type, network_type_names, network_types,
                                           register_network_type, space_arg_types, type_of)

__all__ = [
    "NetworkModuleName", "NetworkTypeEntry", "SpaceArg", "check_network_args", "conv_type_names",
    "network_modules", "network_type", "network_type_names", "network_types", "register_network_type",
    "space_arg_types", "type_of",
]
