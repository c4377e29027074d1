"""A run's LoRA files: kohya's names, and the write of one with lrfind's training metadata.

Here, below the final run, because the run writes them and lrfind.final reads them back by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lrfind.network import save_lora
from lrfind.training.config import TrainConfig
from lrfind.training.metadata import training_metadata


def lora_file_path(config: TrainConfig, epoch: Optional[int] = None) -> Path:
    """kohya's names: NAME-000001.safetensors per saved epoch, NAME.safetensors at the end."""
    suffix = f"-{epoch:06d}" if epoch is not None else ""
    return Path(config.output_dir) / f"{config.output_name}{suffix}.safetensors"


def save_network(path: Path, parts, config: TrainConfig, dataset, components, state, started: float) -> Path:
    metadata = training_metadata(config, dataset, components, state, started)
    dtype = {"fp16": "fp16", "bf16": "bf16", "float": "fp32"}[config.save_precision]
    save_lora(path, parts.network.kohya_state_dict(), metadata, dtype)
    return path
