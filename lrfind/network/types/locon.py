"""LoCon (kohya's "LoRA-C3Lier"): networks.lora with conv_dim, so the ResNet 3x3 convs are adapted too.

Without a space's conv_dim_fraction it trains conv_dim = dim (lycoris' default for its LoCon, so
the two LoCons are comparable) and conv_alpha at the linear layers' alpha/dim fraction.
"""

from typing import Any, Mapping

from lrfind.network.types.entry import A1111, COMFYUI, DIFFUSERS, NetworkTypeEntry
from lrfind.network.types.lora import ARGS_CHECKER, BUILDER, KOHYA_NOTE, NETWORK_MODULE


def _is_locon(network_args: Mapping[str, Any]) -> bool:
    return "conv_dim" in network_args


ENTRY = NetworkTypeEntry(
    name="locon",
    label="LoCon (kohya)",
    network_module=NETWORK_MODULE,
    is_type=_is_locon,
    lr_factor=1.0,  # measured: within 2 significant digits of LoRA's
    builder=BUILDER,
    args_checker=ARGS_CHECKER,
    kohya_note=KOHYA_NOTE,
    adapts_convs=True,
    convs_by_default=True,
    clients=(A1111, COMFYUI, DIFFUSERS),
)
