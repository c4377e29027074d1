"""kohya's `--network_args` for `networks.lora`, checked and typed (no torch).

kohya reads each as a string and converts it (`int(conv_dim)`, `float(rank_dropout)`); lrfind
accepts the same strings or TOML numbers. Keys kohya's networks.lora has that lrfind does not
implement (block_dims, down_lr_weight, ...) are refused rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from lrfind.errors import ConfigError

DROPOUT_KEYS = ("module_dropout", "rank_dropout")
LORAPLUS_KEYS = ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio")
LORA_ARG_KEYS = ("conv_dim", "conv_alpha", *LORAPLUS_KEYS, *DROPOUT_KEYS)
# kohya's networks.lora has these too; lrfind refuses them rather than train something else
KOHYA_BLOCK_KEYS = ("block_dims", "block_alphas", "conv_block_dims", "conv_block_alphas", "down_lr_weight",
                    "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold")
# kohya: conv_dim given without conv_alpha -> conv_alpha 1.0
DEFAULT_CONV_ALPHA = 1.0


@dataclass(frozen=True)
class LoraArgs:
    conv_dim: Optional[int] = None
    conv_alpha: Optional[float] = None
    loraplus_lr_ratio: Optional[float] = None
    loraplus_unet_lr_ratio: Optional[float] = None
    loraplus_text_encoder_lr_ratio: Optional[float] = None
    module_dropout: Optional[float] = None
    rank_dropout: Optional[float] = None

    def loraplus_ratio(self, part: str) -> Optional[float]:
        """kohya: the part's own ratio, else loraplus_lr_ratio (`a or b`, so 0 falls through)."""
        own = self.loraplus_unet_lr_ratio if part == "unet" else self.loraplus_text_encoder_lr_ratio
        return own or self.loraplus_lr_ratio


def _number(key: str, value: object, kind, accepted: str):
    if isinstance(value, bool):
        value = None
    try:
        number = kind(value) if kind is float else _whole(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--network-args {key}={value}: must be {accepted}") from None
    return number


def _whole(value: object) -> int:
    number = float(value)  # "4", 4 and 4.0 are all 4; 4.5 is not a rank
    if number != int(number):
        raise ValueError(value)
    return int(number)


def parse_lora_args(args: Mapping[str, object]) -> LoraArgs:
    """kohya's networks.lora network_args -> LoraArgs; ConfigError naming the arg otherwise."""
    unknown = [key for key in args if key not in LORA_ARG_KEYS]
    if unknown:
        key = unknown[0]
        if key == "dropout":
            why = "networks.lora takes its dropout from --network-dropout"
        elif key in KOHYA_BLOCK_KEYS:
            why = "kohya's block-wise dims / lr weights are not implemented in lrfind"
        else:
            why = "not an argument of networks.lora (LyCORIS's algo=... needs --network-module lycoris.kohya)"
        raise ConfigError(f"--network-args {key}: {why}; use {', '.join(LORA_ARG_KEYS)}")
    values: dict[str, object] = {}
    if "conv_dim" in args:
        values["conv_dim"] = _number("conv_dim", args["conv_dim"], int, "a whole number >= 1, e.g. 4")
        if values["conv_dim"] < 1:
            raise ConfigError(f"--network-args conv_dim={args['conv_dim']}: must be a whole number "
                              ">= 1; leave conv_dim out to adapt no 3x3 convs")
        values["conv_alpha"] = DEFAULT_CONV_ALPHA
    if "conv_alpha" in args:
        if "conv_dim" not in args:
            raise ConfigError(f"--network-args conv_alpha={args['conv_alpha']}: needs conv_dim "
                              "(e.g. conv_dim=4 conv_alpha=1)")
        values["conv_alpha"] = _number("conv_alpha", args["conv_alpha"], float, "a number > 0, e.g. 1")
        if not values["conv_alpha"] > 0:
            raise ConfigError(f"--network-args conv_alpha={args['conv_alpha']}: must be > 0, e.g. 1")
    for key in LORAPLUS_KEYS:
        if key in args:
            values[key] = _number(key, args[key], float, "a number > 0, e.g. 16")
            if not values[key] > 0:
                raise ConfigError(f"--network-args {key}={args[key]}: must be > 0 (16 is LoRA+'s usual)")
    for key in DROPOUT_KEYS:
        if key in args:
            values[key] = _number(key, args[key], float, "a number in [0, 1), e.g. 0.1")
            if not 0 <= values[key] < 1:
                raise ConfigError(f"--network-args {key}={args[key]}: must be in [0, 1), e.g. 0.1")
    return LoraArgs(**values)
