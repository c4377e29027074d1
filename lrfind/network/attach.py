"""Attaching a run's network: the protocol every network type's network has, and the one entry point.

`attach_network(components, spec, seed)` checks `spec.network_args` with its module's checker, finds
the type they are (lrfind.network.types.type_of) and calls that type's builder. Importing this
module does not import torch: a type's builder is imported when a run attaches it.
"""

from __future__ import annotations

from typing import Mapping, Optional, Protocol, runtime_checkable

from lrfind.errors import ConfigError
from lrfind.network.naming import has_two_text_encoders
from lrfind.network.spec import NetworkSpec
from lrfind.network.types import check_network_args, type_of

# kohya's SDXL names: two text encoders, the U-Net in the SGM layout; SD 1.x: one encoder, diffusers' layout.
SDXL_KEY_PREFIXES = ("lora_te1_", "lora_te2_", "lora_unet_input_blocks_", "lora_unet_middle_block_",
                     "lora_unet_output_blocks_")
SD1_KEY_PREFIXES = ("lora_te_", "lora_unet_down_blocks_", "lora_unet_mid_block_", "lora_unet_up_blocks_")


@runtime_checkable
class Network(Protocol):
    """What the trainer, the study and the savers use of an attached network.

    Parameters come back in a fixed module order. `kohya_state_dict` gives the file's tensors
    (kohya's or LyCORIS's key names, `.alpha` included); `load_kohya_state_dict` takes them back
    (ConfigError naming `source` when the file is of another type or shape) and returns the
    number of modules loaded. `param_groups` gives torch optimizer groups
    ({"params", "lr", "name"}, kohya's names "unet" / "textencoder", LoRA+ adds "unet plus" /
    "textencoder plus"); `text_encoder_lr=None` leaves the text encoder out. `detach()` puts the
    model back exactly as before attaching (modules, requires_grad, train/eval) and is idempotent.
    `module_names()` lists the kohya names of the adapted modules, in module order.
    """

    spec: NetworkSpec

    def parts(self) -> tuple[str, ...]: ...

    def unet_parameters(self) -> list: ...

    def text_encoder_parameters(self) -> list: ...

    def trainable_parameter_count(self) -> int: ...

    def module_names(self) -> list[str]: ...

    def param_groups(self, unet_lr: float, text_encoder_lr: Optional[float]) -> list[dict]: ...

    def detach(self) -> None: ...

    def kohya_state_dict(self, dtype="fp32") -> dict: ...

    def load_kohya_state_dict(self, state_dict: dict, source: str = "the LoRA weights") -> int: ...


def check_weights_module(metadata: Mapping[str, str], spec: NetworkSpec, source: str) -> None:
    """A --network-weights file of another network type is a ConfigError naming it."""
    trained_with = metadata.get("ss_network_module")
    if trained_with and trained_with != spec.network_module:
        args = metadata.get("ss_network_args")
        hint = f" with --network-args from its ss_network_args {args}" if args else ""
        raise ConfigError(f"{source}: a {trained_with} network, and this run trains "
                          f"{spec.network_module}; set --network-module {trained_with}{hint}, or "
                          "start without --network-weights")


def attach_network(components, spec: NetworkSpec, seed: Optional[int] = None) -> Network:
    """Attach a fresh network of the type `spec`'s module and args are; `detach()` undoes it."""
    check_network_args(spec.network_module, spec.network_args)
    return type_of(spec.network_module, spec.network_args).build()(components, spec, seed)


def weights_family(state_dict: Mapping[str, object], metadata: Mapping[str, str]) -> Optional[str]:
    """"sdxl" or "sd1" for a kohya network file, from its keys (SDXL: lora_te1_/lora_te2_ text
    encoders, SGM-named U-Net modules) or else its metadata; None when neither says."""
    names = {key.split(".", 1)[0] for key in state_dict}
    if any(n.startswith(SDXL_KEY_PREFIXES) for n in names):
        return "sdxl"
    if any(n.startswith(SD1_KEY_PREFIXES) for n in names):
        return "sd1"
    version = metadata.get("ss_base_model_version", "")
    if version:
        return "sdxl" if version.startswith("sdxl") else "sd1"
    return None


def check_weights_family(state_dict: Mapping[str, object], metadata: Mapping[str, str], components,
                         source: str) -> None:
    """A --network-weights file trained on another model family is a ConfigError naming both."""
    trained_on = weights_family(state_dict, metadata)
    model = "sdxl" if has_two_text_encoders(components) else "sd1"
    if trained_on is not None and trained_on != model:
        labels = {"sdxl": "SDXL", "sd1": "SD 1.x"}
        raise ConfigError(f"{source}: an {labels[trained_on]} LoRA, and --model is an {labels[model]} model; "
                          f"use a LoRA trained on an {labels[model]} model, or start without --network-weights")
