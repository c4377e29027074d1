"""`train_lora`: one complete LoRA training run from a TrainConfig (what `lrfind train` does).

Probe and study call `lora_run` + `run_loop` directly with their own callbacks and a model
loaded once; this module adds what a user-facing run needs: checks before anything heavy,
TensorBoard, progress, checkpoints every n epochs, and the final kohya-format LoRA file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

from lrfind.errors import ConfigError
from lrfind.training.config import TrainConfig


@dataclass
class TrainResult:
    output_path: Path
    saved: list[Path]
    state: Any  # LoopState
    logdir: Optional[Path] = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def preflight(config: TrainConfig) -> None:
    """Checks that need no model: fail before loading anything or writing any file."""
    from lrfind.training.optimizers import canonical_optimizer_name, is_adaptive
    from lrfind.training.schedulers import check_scheduler_args

    canonical_optimizer_name(config.optimizer_type)
    check_scheduler_args(config.lr_scheduler, num_training_steps=max(config.lr_warmup_steps, 1),
                         num_warmup_steps=config.lr_warmup_steps, num_cycles=config.lr_scheduler_num_cycles,
                         power=config.lr_scheduler_power)
    if is_adaptive(config.optimizer_type) and config.trains_text_encoder and (
        config.effective_unet_lr != config.effective_text_encoder_lr
    ):
        raise ConfigError(
            f"{config.optimizer_type} shares one step size d across UNet and text encoder and needs one lr "
            f"for both (got unet {config.effective_unet_lr}, text encoder {config.effective_text_encoder_lr}); "
            "give the same value (e.g. --learning-rate 1.0 without --unet-lr/--text-encoder-lr) "
            "or use --network-train-unet-only"
        )
    if config.network_weights is not None and not Path(config.network_weights).is_file():
        raise ConfigError(f"{config.network_weights}: --network-weights file not found; check the path")


def lora_file_path(config: TrainConfig, epoch: Optional[int] = None) -> Path:
    """kohya's names: NAME-000001.safetensors per saved epoch, NAME.safetensors at the end."""
    suffix = f"-{epoch:06d}" if epoch is not None else ""
    return Path(config.output_dir) / f"{config.output_name}{suffix}.safetensors"


def save_network(path: Path, parts, config: TrainConfig, dataset, components, state, started: float) -> Path:
    from lrfind.network import save_lora
    from lrfind.training.metadata import training_metadata

    metadata = training_metadata(config, dataset, components, state, started)
    dtype = {"fp16": "fp16", "bf16": "bf16", "float": "fp32"}[config.save_precision]
    save_lora(path, parts.network.kohya_state_dict(), metadata, dtype)
    return path


def train_lora(config: TrainConfig, *, components=None, dataset=None, store=None,
               callbacks: Sequence[Any] = ()) -> TrainResult:
    from lrfind.cache import TensorStore, default_cache_dir
    from lrfind.data.kohya import scan_dataset
    from lrfind.models.loading import load_components
    from lrfind.training.callbacks import EpochCheckpoint, ProgressBar, TensorBoardLogger
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    preflight(config)
    dataset = dataset or scan_dataset(config.dataset_config())
    components = components or load_components(config.base_model_config())
    store = store or TensorStore(config.cache_dir or default_cache_dir())
    started = time.time()
    saved: list[Path] = []
    logdir = None
    with lora_run(config, components, dataset, store) as parts:
        epochs = -(-parts.total_steps // parts.steps_per_epoch)
        all_callbacks = [ProgressBar(f"train {config.output_name}", enabled=config.progress), *callbacks]
        if config.logging_dir is not None:
            logdir = Path(config.logging_dir) / datetime.now().strftime("%Y%m%d%H%M%S") / "network_train"
            all_callbacks.append(TensorBoardLogger(logdir))
        state_holder: dict = {}

        def save_epoch(epoch: int) -> None:
            path = lora_file_path(config, epoch)
            saved.append(save_network(path, parts, config, dataset, components, state_holder["state"], started))

        if config.save_every_n_epochs:
            all_callbacks.append(EpochCheckpoint(config.save_every_n_epochs, save_epoch, last_epoch=epochs))
        all_callbacks.insert(0, _StateHolder(state_holder))
        state = run_loop(parts, all_callbacks)
        final = save_network(lora_file_path(config), parts, config, dataset, components, state, started)
    return TrainResult(final, saved + [final], state, logdir, time.time() - started)


class _StateHolder:
    """Lets the epoch-save closure see the live loop state."""

    def __init__(self, holder: dict):
        self.holder = holder

    def on_train_start(self, state) -> None:
        self.holder["state"] = state
