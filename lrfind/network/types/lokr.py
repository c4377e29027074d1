"""LoKr: lycoris.kohya algo=lokr, each update a Kronecker product; a space may search its factor.

Without a space's lokr_factor no factor is passed: lycoris' -1, the most balanced factorisation.
"""

from typing import Any, Mapping

from lrfind.network.types.entry import A1111, COMFYUI, NetworkTypeEntry, SpaceArg
from lrfind.network.types.lycoris_locon import ARGS_CHECKER, BUILDER, KOHYA_NOTE, NETWORK_MODULE, lycoris_algo


def _is_lokr(network_args: Mapping[str, Any]) -> bool:
    return lycoris_algo(network_args) == "lokr"


ENTRY = NetworkTypeEntry(
    name="lokr",
    label="LoKr",
    network_module=NETWORK_MODULE,
    is_type=_is_lokr,
    lr_factor=2.0,  # measured: its optimum twice LoRA's
    builder=BUILDER,
    args_checker=ARGS_CHECKER,
    kohya_note=KOHYA_NOTE,
    fixed_args={"algo": "lokr"},
    adapts_convs=True,
    space_args=(SpaceArg(dimension="lokr_factor", network_arg="factor", minimum=2,
                         rule="LoKr factors are whole numbers >= 2 (leave lokr_factor out for lycoris' -1)"),),
    clients=(A1111, COMFYUI),  # diffusers' load_lora_weights raises on its keys
)
