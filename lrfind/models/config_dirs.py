"""Folders of diffusers-format component configs, so single-file checkpoints load with no network.

diffusers' `from_single_file` needs the configs of a model's components (UNet, VAE, text encoder);
without a local folder it fetches them from the Hub. SD 1.5's configs are shipped in the package
(`configs/sd15/`). The tiny model's folder is written at run time from the dicts in `tiny.py`, the
single source of truth, into the lrfind cache, under a name that changes when the dicts change.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lrfind.atomic import write_json

CONFIGS_ROOT = Path(__file__).parent / "configs"
SD15_CONFIG_DIR = CONFIGS_ROOT / "sd15"


def cache_root() -> Path:
    return Path(os.environ.get("LRFIND_CACHE_DIR", Path.home() / ".cache" / "lrfind"))


def sd15_config_dir() -> Path:
    """The shipped SD 1.5 component configs (model_index.json, unet/, vae/, text_encoder/, scheduler/)."""
    return SD15_CONFIG_DIR


def tiny_config_files() -> dict[str, dict]:
    """Relative path -> JSON content of the tiny model's config folder, from tiny.py's dicts."""
    from lrfind.models.tiny import (  # lazy: lrfind --help loads this module (through lrfind.export)
        SD15_SCHEDULER_CONFIG,
        TINY_TEXT_ENCODER_CONFIG,
        TINY_UNET_CONFIG,
        TINY_VAE_CONFIG,
    )

    model_index = json.loads((SD15_CONFIG_DIR / "model_index.json").read_text())
    text_encoder = {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", **TINY_TEXT_ENCODER_CONFIG}
    return {
        "model_index.json": model_index,
        "unet/config.json": {"_class_name": "UNet2DConditionModel", **TINY_UNET_CONFIG},
        "vae/config.json": {"_class_name": "AutoencoderKL", **TINY_VAE_CONFIG},
        "text_encoder/config.json": text_encoder,
        "scheduler/scheduler_config.json": {"_class_name": "DDPMScheduler", **SD15_SCHEDULER_CONFIG},
    }


def tiny_config_dir() -> Path:
    """The tiny model's config folder, written once per content version (atomically, file by file)."""
    files = tiny_config_files()
    digest = hashlib.blake2b(json.dumps(files, sort_keys=True).encode(), digest_size=6).hexdigest()
    folder = cache_root() / "model-configs" / f"tiny-{digest}"
    for relative, content in files.items():
        target = folder / relative
        if not target.is_file():
            write_json(target, content)
    return folder
