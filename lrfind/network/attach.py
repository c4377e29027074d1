"""Attaching a run's network: the protocol every network type's network has, and the one entry point.

`attach_network(components, spec, seed)` checks `spec.network_args` with its module's checker, finds
the type they are (lrfind.network.types.type_of) and calls that type's builder. Importing this
module does not import torch: a type's builder is imported when a run attaches it.
"""

from __future__ import annotations

from typing import Mapping, Optional, Protocol, runtime_checkable

from lrfind.errors import ConfigError
from lrfind.network.spec import NetworkSpec
from lrfind.network.types import check_network_args, type_of

KOHYA_LORA_MODULE = "networks.lora"


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
    if components.text_encoder_2 is not None and spec.network_module != KOHYA_LORA_MODULE:
        raise ConfigError(f"--network-module {spec.network_module}: SDXL trains kohya's {KOHYA_LORA_MODULE} "
                          "(LoRA, and LoCon with --network-args conv_dim=N) so far; LyCORIS on SDXL is not "
                          f"supported yet, use --network-module {KOHYA_LORA_MODULE}")
    return type_of(spec.network_module, spec.network_args).build()(components, spec, seed)
