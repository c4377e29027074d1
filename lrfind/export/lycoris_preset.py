"""A LyCORIS preset file for kohya, when LyCORIS's built-in preset would stop kohya's run.

lycoris-lora 4.1.3's presets `full` (its default) and `unet-only` select SD's time embedding twice,
by class (`TimestepEmbedding`) and by name (`time_embedding.linear_1/_2`), and
`lycoris.kohya.create_network` then stops on "duplicated lora name:
lora_unet_time_embedding_linear_1" (measured in kohya sd-scripts 48d368fa on the SD 1.5 model:
`--network_module lycoris.kohya --network_args algo=loha` without a preset never starts). lrfind
trains with that preset minus the duplicate class (lrfind.network.lycoris_args), so the export
writes exactly that preset as a TOML file, which LyCORIS reads for `preset=FILE.toml` as it reads
its own: kohya then builds the network lrfind trained, module for module. On SDXL kohya's U-Net (the SGM
layout) has no TimestepEmbedding class and no `time_embedding.*` path, so `full` builds as it is.
"""

from __future__ import annotations

import json
from typing import Mapping, Optional

from lrfind.models.config_dirs import sd15_config_dir, sdxl_config_dir
from lrfind.network.lycoris_args import DEFAULT_PRESET, NETWORK_MODULE, resolved_preset, without_duplicate_targets

PRESET_FILE = "lycoris_preset.toml"


def _kohya_unet_layout(family: str):
    """The U-Net lycoris walks in kohya, on torch's meta device (names and types, no weights): SD's
    own layout; for SDXL kohya's SGM layout (lrfind.network.lycoris_sgm's view of SDXL's U-Net)."""
    import torch
    from diffusers import UNet2DConditionModel

    folder = sdxl_config_dir() if family == "sdxl" else sd15_config_dir()
    config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    if family != "sdxl":
        return unet
    from lrfind.network.lycoris_sgm import sgm_view

    return sgm_view(unet)


def kohya_preset_toml(network_module: Optional[str], network_args: Mapping[str, object],
                      family: str = "sd1") -> Optional[str]:
    """The preset lrfind trained with, as TOML, when kohya given the same preset name would not
    build it; None when kohya builds the same network from the arguments as they are (SDXL: always,
    its U-Net has no TimestepEmbedding for `full` to name twice). `family`: the base model's."""
    if network_module != NETWORK_MODULE:
        return None
    name = str(network_args.get("preset", DEFAULT_PRESET))
    if name.endswith(".toml"):  # the user's own file: kohya reads it as lrfind did
        return None
    import toml  # lycoris-lora's own TOML library (its read_preset uses toml.load)

    preset = resolved_preset(name)
    trained = without_duplicate_targets(preset, _kohya_unet_layout(family))
    return None if trained == preset else toml.dumps(trained)
