"""NetworkSpec: what network to attach, in kohya's terms (network_module, dim, alpha, args).

Plain data, no torch: built from a TrainConfig by training/setup.py and handed to
`lrfind.network.attach.attach_network`. Each network type reads the `network_args` it knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from lrfind.errors import ConfigError

DEFAULT_NETWORK_MODULE = "networks.lora"


@dataclass(frozen=True)
class NetworkSpec:
    """kohya's --network_module / --network_dim / --network_alpha / --network_args /
    --network_dropout, and which parts of the model to adapt."""

    network_dim: int
    network_alpha: float
    train_unet: bool = True
    train_text_encoder: bool = False
    network_module: str = DEFAULT_NETWORK_MODULE
    network_args: dict = field(default_factory=dict, hash=False)  # kohya's --network_args, key -> value
    network_dropout: Optional[float] = None  # kohya's --network_dropout (dropout after lora_down)

    def __post_init__(self):
        if int(self.network_dim) != self.network_dim or self.network_dim < 1:
            raise ConfigError(f"--network-dim {self.network_dim}: must be a whole number >= 1")
        if not self.network_alpha > 0:
            raise ConfigError(f"--network-alpha {self.network_alpha}: must be > 0 (kohya's "
                              "usual choices: equal to --network-dim, or half of it, or 1)")
        if not (self.train_unet or self.train_text_encoder):
            raise ConfigError("the network trains neither the UNet nor the text encoder; enable one")
        if self.network_dropout is not None and not 0 <= self.network_dropout < 1:
            raise ConfigError(f"--network-dropout {self.network_dropout}: must be in [0, 1), e.g. 0.1")

    @property
    def scale(self) -> float:
        """kohya's multiplier of the LoRA branch: alpha / dim."""
        return self.network_alpha / self.network_dim


# Round one's name; every network type takes the same spec.
LoraSpec = NetworkSpec
