"""Folders of diffusers-format component configs, so single-file checkpoints load with no network.

diffusers' `from_single_file` needs the configs of a model's components (UNet, VAE, text encoder);
without a local folder it fetches them from the Hub. SD 1.5's configs are shipped in the package
(`configs/sd15/`), SDXL base 1.0's too (`configs/sdxl/`, diffusers' SDXL values). The tiny models'
folders are written at run time from the dicts in `tiny.py` / `tiny_sdxl.py`, the single source of
truth, into the lrfind cache, under a name that changes when the dicts change.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lrfind.atomic import write_json

CONFIGS_ROOT = Path(__file__).parent / "configs"
SD15_CONFIG_DIR = CONFIGS_ROOT / "sd15"
SDXL_CONFIG_DIR = CONFIGS_ROOT / "sdxl"


def cache_root() -> Path:
    return Path(os.environ.get("LRFIND_CACHE_DIR", Path.home() / ".cache" / "lrfind"))


def sd15_config_dir() -> Path:
    """The shipped SD 1.5 component configs (model_index.json, unet/, vae/, text_encoder/, scheduler/)."""
    return SD15_CONFIG_DIR


def sdxl_config_dir() -> Path:
    """The shipped SDXL base 1.0 component configs (+ text_encoder_2/)."""
    return SDXL_CONFIG_DIR


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


def tiny_sdxl_config_files() -> dict[str, dict]:
    """Relative path -> JSON content of tiny-sdxl's config folder, from tiny_sdxl.py's dicts."""
    from lrfind.models.tiny_sdxl import (  # lazy: as in tiny_config_files
        SDXL_SCHEDULER_CONFIG,
        TINY_SDXL_TEXT_ENCODER_2_CONFIG,
        TINY_SDXL_TEXT_ENCODER_CONFIG,
        TINY_SDXL_UNET_CONFIG,
        TINY_SDXL_VAE_CONFIG,
    )

    return {
        "model_index.json": json.loads((SDXL_CONFIG_DIR / "model_index.json").read_text()),
        "unet/config.json": {"_class_name": "UNet2DConditionModel", **TINY_SDXL_UNET_CONFIG},
        "vae/config.json": {"_class_name": "AutoencoderKL", **TINY_SDXL_VAE_CONFIG},
        "text_encoder/config.json": {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
                                     **TINY_SDXL_TEXT_ENCODER_CONFIG},
        "text_encoder_2/config.json": {"architectures": ["CLIPTextModelWithProjection"], "model_type": "clip_text_model",
                                       **TINY_SDXL_TEXT_ENCODER_2_CONFIG},
        "scheduler/scheduler_config.json": {"_class_name": "DDPMScheduler", **SDXL_SCHEDULER_CONFIG},
    }


def _cached_config_dir(name: str, files: dict[str, dict]) -> Path:
    """A config folder in the lrfind cache, written once per content version (atomically, file by file)."""
    digest = hashlib.blake2b(json.dumps(files, sort_keys=True).encode(), digest_size=6).hexdigest()
    folder = cache_root() / "model-configs" / f"{name}-{digest}"
    for relative, content in files.items():
        target = folder / relative
        if not target.is_file():
            write_json(target, content)
    return folder


def tiny_config_dir() -> Path:
    """The tiny model's config folder."""
    return _cached_config_dir("tiny", tiny_config_files())


def tiny_sdxl_config_dir() -> Path:
    """tiny-sdxl's config folder."""
    return _cached_config_dir("tiny-sdxl", tiny_sdxl_config_files())
