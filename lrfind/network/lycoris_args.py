"""lycoris.kohya's network args and presets as lrfind passes them on: checking and resolving. No torch
at import (lycoris is imported when a preset is read).

kohya passes `--network_args key=value` to `lycoris.kohya.create_network` as strings; lrfind checks
the keys it passes on and their values first, so a bad one is one line naming it (exit 2), not a
traceback from inside lycoris. A preset is a LyCORIS built-in name or a .toml file
(`lycoris.utils.preset.read_preset`); `without_duplicate_targets` is the one change lrfind makes
to a preset (lrfind.network.lycoris_net says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lrfind.errors import ConfigError
from lrfind.network.spec import NetworkSpec

NETWORK_MODULE = "lycoris.kohya"
ALGOS = ("locon", "loha", "lokr", "lora")  # lycoris builds the same LoConModule for lora and locon
FILE_LABELS = {"lora": "LoRA/LoCon", "loha": "LoHa", "lokr": "LoKr"}
ALGO_LABELS = {"locon": "LoCon", "lora": "LoCon", "loha": "LoHa", "lokr": "LoKr"}
FLOAT_ARGS = ("conv_alpha", "dropout", "rank_dropout", "module_dropout")
BOOL_ARGS = ("use_tucker", "full_matrix")
ARG_KEYS = ("algo", "preset", "conv_dim", "factor") + FLOAT_ARGS + BOOL_ARGS
DEFAULT_PRESET = "full"  # lycoris.kohya.create_network's default


def spec_algo(spec: NetworkSpec) -> str:
    """The LyCORIS algo of a lycoris.kohya spec (lycoris' own default is plain `lora` = LoCon)."""
    return str(spec.network_args.get("algo", "locon")).lower()


def builtin_presets() -> tuple[str, ...]:
    from lycoris.config import PRESET

    return tuple(PRESET)


def _number(key: str, value, kind, accepted: str):
    try:
        number = kind(value)
        if kind is int and float(value) != number:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"--network-args {key}={value}: not a number; accepted: {accepted}") from None
    return number


def check_lycoris_args(args: Mapping[str, Any]) -> dict[str, str]:
    """Validate lycoris.kohya network args; returns them as kohya passes them (strings).

    ConfigError (one line: the argument and what is accepted) for an unknown key or algo, a
    preset that is neither built in nor a .toml file, a LoKr factor that cannot factorise, and
    arguments that would be silently ignored (factor without algo=lokr).
    """
    unknown = sorted(set(args) - set(ARG_KEYS))
    if unknown:
        raise ConfigError(f"--network-args {unknown[0]}: not a lycoris.kohya argument lrfind "
                          f"passes on; accepted: {', '.join(ARG_KEYS)}")
    values = {key: str(value) for key, value in args.items()}
    algo = values.get("algo", "locon").lower()
    if algo not in ALGOS:
        raise ConfigError(f"--network-args algo={values['algo']}: unknown LyCORIS algo; accepted: "
                          f"{', '.join(ALGOS)}")
    if "algo" in values:
        values["algo"] = algo
    preset = values.get("preset", DEFAULT_PRESET)
    if preset not in builtin_presets() and not (preset.endswith(".toml") and Path(preset).is_file()):
        raise ConfigError(f"--network-args preset={preset}: not a LyCORIS preset; accepted: "
                          f"{', '.join(builtin_presets())} or the path of a preset .toml file")
    if "conv_dim" in values and _number("conv_dim", values["conv_dim"], int, "a whole number >= 1") < 1:
        raise ConfigError(f"--network-args conv_dim={values['conv_dim']}: must be >= 1")
    for key in FLOAT_ARGS:
        if key in values and _number(key, values[key], float, "a number") < 0:
            raise ConfigError(f"--network-args {key}={values[key]}: must be >= 0")
    for key in ("dropout", "rank_dropout", "module_dropout"):
        if key in values and float(values[key]) >= 1:
            raise ConfigError(f"--network-args {key}={values[key]}: a probability; accepted: 0 <= p < 1")
    for key in BOOL_ARGS:
        if key in values and values[key].lower() not in ("true", "false"):
            raise ConfigError(f"--network-args {key}={values[key]}: accepted: true, false")
    if "factor" in values:
        if algo != "lokr":
            raise ConfigError(f"--network-args factor={values['factor']}: only LoKr has a factor; "
                              "add algo=lokr or drop factor")
        factor = _number("factor", values["factor"], int, "-1 (automatic) or a whole number >= 2")
        if factor != -1 and factor < 2:
            raise ConfigError(f"--network-args factor={values['factor']}: LoKr cannot factorise by "
                              f"{factor}; accepted: -1 (automatic) or a whole number >= 2")
    return values


def resolved_preset(name: str) -> dict:
    """The preset dict lycoris applies for `name` (built in, or read from a .toml file)."""
    import copy

    from lycoris.config import PRESET
    from lycoris.utils.preset import read_preset

    preset = copy.deepcopy(PRESET[name]) if name in PRESET else read_preset(name)
    if preset is None:
        raise ConfigError(f"--network-args preset={name}: the preset file does not parse as a "
                          "LyCORIS preset; fix it or use a built-in preset")
    return preset


def without_duplicate_targets(preset: dict, unet) -> dict:
    """Drop target classes whose every adaptable layer is already selected by a target name.

    See the module docstring: lycoris 4.1.3's `full` names SD's time embedding twice.
    """
    import torch

    names = set(preset.get("unet_target_name") or ())
    classes = list(preset.get("unet_target_module") or ())
    for class_name in list(classes):
        instances = [(path, m) for path, m in unet.named_modules() if type(m).__name__ == class_name]
        layers = [f"{path}.{child}" for path, module in instances
                  for child, sub in module.named_modules()
                  if child and isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d))]
        if instances and layers and all(layer in names for layer in layers):
            classes.remove(class_name)
    return {**preset, "unet_target_module": classes}
