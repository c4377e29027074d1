"""NetworkConfig: the network a run trains (kohya's network_* options), nested in the commands' configs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field, model_validator

from lrfind.config import StrictModel
from lrfind.network.types import NetworkModuleName, check_network_args


class NetworkConfig(StrictModel):
    module: NetworkModuleName = "networks.lora"  # the registered types' modules
    dim: int = Field(8, ge=1, le=1024)
    alpha: float = Field(1.0, gt=0, allow_inf_nan=False)
    train_unet_only: bool = False  # kohya trains the text encoder too unless told not to
    weights: Optional[Path] = None  # a LoRA file to start from (kohya's --network_weights)
    args: dict[str, object] = Field(default_factory=dict)  # kohya's --network_args k=v ...
    dropout: Optional[float] = Field(None, ge=0, lt=1)  # kohya's: dropout after lora_down

    @model_validator(mode="after")
    def _args_of_the_type(self) -> "NetworkConfig":
        check_network_args(self.module, self.args)  # ConfigError naming the arg
        return self

    @property
    def trains_text_encoder(self) -> bool:
        return not self.train_unet_only
