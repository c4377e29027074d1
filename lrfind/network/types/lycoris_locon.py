"""LoCon (LyCORIS): lycoris.kohya algo=locon, preset full (SD 1.x: + conv_in/out and the time embedding).

The LyCORIS types share its module, builder, checker and how the algo is read. Without a space's
conv_dim_fraction no conv_dim is passed (lycoris: conv_dim = dim, conv_alpha = alpha).
"""

from typing import Any, Mapping

from lrfind.network.types.entry import A1111, COMFYUI, DIFFUSERS, NetworkTypeEntry

NETWORK_MODULE = "lycoris.kohya"
BUILDER = "lrfind.network.lycoris_net:attach_lycoris"
ARGS_CHECKER = "lrfind.network.lycoris_args:check_lycoris_args"
KOHYA_NOTE = "LyCORIS: pip install lycoris-lora in kohya's environment"
DEFAULT_ALGO = "locon"  # lycoris.kohya's algo when the args name none


def lycoris_algo(network_args: Mapping[str, Any]) -> str:
    """The algo lycoris.kohya builds for these args, lower-case."""
    return str(network_args.get("algo", DEFAULT_ALGO)).lower()


def _is_lycoris_locon(network_args: Mapping[str, Any]) -> bool:
    return lycoris_algo(network_args) in ("locon", "lora")  # lycoris builds the same LoConModule for both


ENTRY = NetworkTypeEntry(
    name="lycoris_locon",
    label="LoCon (LyCORIS)",
    network_module=NETWORK_MODULE,
    is_type=_is_lycoris_locon,
    lr_factor=0.87,
    builder=BUILDER,
    args_checker=ARGS_CHECKER,
    kohya_note=KOHYA_NOTE,
    fixed_args={"algo": "locon"},
    adapts_convs=True,
    clients=(A1111, COMFYUI, DIFFUSERS),  # diffusers loads a LyCORIS LoCon file (tests/test_lycoris.py)
)
