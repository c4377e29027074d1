"""The network types lrfind can train (kohya's --network_module), and the protocol they share.

`attach_network(components, spec, seed)` looks up `spec.network_module` in NETWORK_TYPES and
attaches a fresh network of that type. Each type checks its own `--network-args`
(`check_args`), so a config is validated before any model is loaded. Importing this module does
not import torch: each type's `attach` imports what it needs when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Protocol, runtime_checkable

from lrfind.errors import ConfigError
from lrfind.network.lora import attach_lora
from lrfind.network.lora_args import parse_lora_args
from lrfind.network.spec import NetworkSpec


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


@dataclass(frozen=True)
class NetworkType:
    """One --network-module: how to attach it and which --network-args it accepts."""

    name: str
    attach: Callable[..., Network]  # (components, spec, seed) -> Network
    check_args: Callable[[Mapping[str, object]], None]  # ConfigError naming the bad arg


def _attach_lora(components, spec: NetworkSpec, seed: Optional[int]) -> Network:
    return attach_lora(components, spec, seed)


def _check_lora_args(args: Mapping[str, object]) -> None:
    parse_lora_args(args)


def _attach_lycoris(components, spec: NetworkSpec, seed: Optional[int]) -> Network:
    from lrfind.network.lycoris_net import attach_lycoris  # lazy: lrfind --help loads this registry, not LyCORIS

    return attach_lycoris(components, spec, seed)


def _check_lycoris_args(args: Mapping[str, object]) -> None:
    from lrfind.network.lycoris_net import check_lycoris_args  # lazy: as _attach_lycoris

    check_lycoris_args(args)


NETWORK_TYPES: dict[str, NetworkType] = {
    "networks.lora": NetworkType("networks.lora", _attach_lora, _check_lora_args),
    "lycoris.kohya": NetworkType("lycoris.kohya", _attach_lycoris, _check_lycoris_args),
}


def network_type(name: str) -> NetworkType:
    if name not in NETWORK_TYPES:
        raise ConfigError(f"--network-module {name}: not available; use one of "
                          f"{', '.join(sorted(NETWORK_TYPES))}")
    return NETWORK_TYPES[name]


def check_network_args(network_module: str, network_args: Mapping[str, object]) -> None:
    """ConfigError (one line: the arg, the accepted values) unless the args suit the type."""
    network_type(network_module).check_args(network_args)


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
    """Attach a fresh network of type `spec.network_module`; `detach()` undoes it."""
    kind = network_type(spec.network_module)
    kind.check_args(spec.network_args)
    return kind.attach(components, spec, seed)
