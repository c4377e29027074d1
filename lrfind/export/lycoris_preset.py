"""A LyCORIS preset file for kohya, when LyCORIS's built-in preset would stop kohya's run.

lycoris-lora 4.1.3's presets `full` (its default) and `unet-only` select SD's time embedding twice,
by class (`TimestepEmbedding`) and by name (`time_embedding.linear_1/_2`), and
`lycoris.kohya.create_network` then stops on "duplicated lora name:
lora_unet_time_embedding_linear_1" (measured in kohya sd-scripts 48d368fa on the SD 1.5 model:
`--network_module lycoris.kohya --network_args algo=loha` without a preset never starts). lrfind
trains with that preset minus the duplicate class (lrfind.network.lycoris_net), so the export
writes exactly that preset as a TOML file, which LyCORIS reads for `preset=FILE.toml` as it reads
its own: kohya then builds the network lrfind trained, module for module.
"""

from __future__ import annotations

import json
from typing import Mapping, Optional

from lrfind.models.config_dirs import sd15_config_dir
from lrfind.network.lycoris_net import DEFAULT_PRESET, NETWORK_MODULE, resolved_preset, without_duplicate_targets

PRESET_FILE = "lycoris_preset.toml"


def _sd_unet_layout():
    """The SD 1.x/2.x UNet's modules on torch's meta device (names and types, no weights)."""
    import torch
    from diffusers import UNet2DConditionModel

    config = json.loads((sd15_config_dir() / "unet" / "config.json").read_text(encoding="utf-8"))
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


def kohya_preset_toml(network_module: Optional[str], network_args: Mapping[str, object]) -> Optional[str]:
    """The preset lrfind trained with, as TOML, when kohya given the same preset name would not
    build it; None when kohya builds the same network from the arguments as they are."""
    if network_module != NETWORK_MODULE:
        return None
    name = str(network_args.get("preset", DEFAULT_PRESET))
    if name.endswith(".toml"):  # the user's own file: kohya reads it as lrfind did
        return None
    import toml  # lycoris-lora's own TOML library (its read_preset uses toml.load)

    preset = resolved_preset(name)
    trained = without_duplicate_targets(preset, _sd_unet_layout())
    return None if trained == preset else toml.dumps(trained)
