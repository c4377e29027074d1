"""LoHa: lycoris.kohya algo=loha, each update the Hadamard product of two low-rank pairs."""

from typing import Any, Mapping

from lrfind.network.types.entry import A1111, COMFYUI, NetworkTypeEntry
from lrfind.network.types.lycoris_locon import ARGS_CHECKER, BUILDER, KOHYA_NOTE, NETWORK_MODULE, lycoris_algo


def _is_loha(network_args: Mapping[str, Any]) -> bool:
    return lycoris_algo(network_args) == "loha"


ENTRY = NetworkTypeEntry(
    name="loha",
    label="LoHa",
    network_module=NETWORK_MODULE,
    is_type=_is_loha,
    lr_factor=1.3,  # measured: its optimum a third above LoRA's
    builder=BUILDER,
    args_checker=ARGS_CHECKER,
    kohya_note=KOHYA_NOTE,
    fixed_args={"algo": "loha"},
    adapts_convs=True,
    clients=(A1111, COMFYUI),  # diffusers' load_lora_weights raises on its keys
)
