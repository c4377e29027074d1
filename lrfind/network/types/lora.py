"""LoRA: kohya's networks.lora without conv_dim (attention, MLP, proj_in/out: Linear and 1x1 convs).

The probe's default network, the one every other type's lr factor is measured against.
"""

from typing import Any, Mapping

from lrfind.network.types.entry import A1111, COMFYUI, DIFFUSERS, NetworkTypeEntry

NETWORK_MODULE = "networks.lora"
BUILDER = "lrfind.network.lora:attach_lora"
ARGS_CHECKER = "lrfind.network.lora_args:parse_lora_args"
KOHYA_NOTE = "kohya's LoRA"


def _is_lora(network_args: Mapping[str, Any]) -> bool:
    return "conv_dim" not in network_args


ENTRY = NetworkTypeEntry(
    name="lora",
    label="LoRA",
    network_module=NETWORK_MODULE,
    is_type=_is_lora,
    lr_factor=1.0,  # the reference
    builder=BUILDER,
    args_checker=ARGS_CHECKER,
    kohya_note=KOHYA_NOTE,
    clients=(A1111, COMFYUI, DIFFUSERS),
)
