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
    loraplus = sorted(k for k in config.network_args if k.startswith("loraplus_"))
    if loraplus and is_adaptive(config.optimizer_type):
        raise ConfigError(
            f"--network-args {loraplus[0]}: {config.optimizer_type} estimates one step size for all parameters, "
            "so LoRA+'s larger lr for lora_up cannot apply (kohya does not support it either); use AdamW, "
            "AdamW8bit or Lion with LoRA+, or drop the loraplus_* args"
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


def with_concept_repeats(dataset, config: TrainConfig):
    """The dataset with config.concept_repeats applied (a study's recommended repeats)."""
    from lrfind.data.types import with_repeats

    if not config.concept_repeats:
        return dataset
    folders = {c.folder.name for c in dataset.concepts}
    unknown = sorted(set(config.concept_repeats) - folders)
    if unknown:
        raise ConfigError(f"{Path(config.train_data_dir) / unknown[0]}: no such concept folder for "
                          f"concept_repeats; the dataset has {', '.join(sorted(folders))}")
    return with_repeats(dataset, dict(config.concept_repeats))


def _scorer_and_reference(config: TrainConfig, components, dataset):
    """CLIP for CLIP-I per sampled epoch: --clip, else the tiny CLIP for the tiny model, else none."""
    from lrfind.study.clip import scorer_for
    from lrfind.study.samples import load_training_images

    if not config.sample_every_n_epochs:
        return None, None
    scorer = scorer_for(components, config.clip, allow_pickle=config.allow_pickle)
    if scorer is None:
        return None, None
    return scorer, scorer.image_embeddings(load_training_images(dataset))


def train_lora(config: TrainConfig, *, components=None, dataset=None, store=None,
               callbacks: Sequence[Any] = ()) -> TrainResult:
    from lrfind.cache import TensorStore, default_cache_dir
    from lrfind.data.kohya import scan_dataset
    from lrfind.final.after_run import finish_final_run
    from lrfind.final.epochs import EpochWatch, read_records, sample_prompts_for
    from lrfind.models.loading import load_components
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run
    from lrfind.training.state import find_resume_folder, load_state

    preflight(config)
    resume_folder = find_resume_folder(config)
    dataset = with_concept_repeats(dataset or scan_dataset(config.dataset_config()), config)
    prompts = sample_prompts_for(config, dataset) if config.sample_every_n_epochs else []
    components = components or load_components(config.base_model_config())
    store = store or TensorStore(config.cache_dir or default_cache_dir())
    scorer, reference = _scorer_and_reference(config, components, dataset)
    started = time.time()
    with lora_run(config, components, dataset, store) as parts:
        state = load_state(resume_folder, config, parts) if resume_folder else None
        epochs = -(-parts.total_steps // parts.steps_per_epoch)
        watch = EpochWatch(config, components, prompts, scorer, reference, last_epoch=epochs,
                           records=read_records(config, state.epoch) if state else None)
        files = _RunFiles(config, parts, dataset, components, started)
        # Order matters at an epoch end: LoRA file, then records, then the state that says "done".
        all_callbacks = [files, *_run_callbacks(config, files, epochs), watch, *callbacks, _StateSaver(files)]
        state = run_loop(parts, all_callbacks, state)
        final = files.save(lora_file_path(config), state)
    summary = finish_final_run(config, components, watch.records, prompts, state.epoch,
                               scorer.calibrated if scorer else None)
    return TrainResult(final, files.saved + [final], state, files.logdir, time.time() - started,
                       extra={"final": summary, "resumed_from": resume_folder})


def _run_callbacks(config: TrainConfig, files: "_RunFiles", epochs: int) -> list:
    from lrfind.training.callbacks import EpochCheckpoint, ProgressBar, TensorBoardLogger

    result = [ProgressBar(f"train {config.output_name}", enabled=config.progress)]
    if config.logging_dir is not None:
        files.logdir = Path(config.logging_dir) / datetime.now().strftime("%Y%m%d%H%M%S") / "network_train"
        result.append(TensorBoardLogger(files.logdir))
    if config.save_every_n_epochs:
        result.append(EpochCheckpoint(config.save_every_n_epochs, files.save_epoch, last_epoch=epochs))
    return result


class _RunFiles:
    """The run's LoRA files and saved states; sees the live loop state (it is the first callback)."""

    def __init__(self, config: TrainConfig, parts, dataset, components, started: float):
        self.config, self.parts, self.dataset, self.components = config, parts, dataset, components
        self.started, self.state, self.saved, self.logdir = started, None, [], None

    def on_train_start(self, state) -> None:
        self.state = state

    def save_epoch(self, epoch: int) -> None:
        self.saved.append(self.save(lora_file_path(self.config, epoch), self.state))

    def save(self, path: Path, state) -> Path:
        return save_network(path, self.parts, self.config, self.dataset, self.components, state, self.started)


class _StateSaver:
    """The last callback: the resumable state of each finished epoch (kohya's --save_state)."""

    def __init__(self, files: _RunFiles):
        self.files = files

    def on_epoch_end(self, state) -> None:
        from lrfind.training.state import save_state

        if self.files.config.save_state:
            save_state(self.files.config, self.files.parts, state)
