"""`train_lora`: one complete LoRA training run from a TrainConfig (what `lrfind train` does).

Probe and study call `lora_run` + `run_loop` (lrfind.training) directly with their own callbacks
and a model loaded once; this module adds what a user-facing run needs: checks before anything
heavy, TensorBoard, progress, checkpoints every n epochs, samples with CLIP-I per epoch, the final
kohya-format LoRA file, and after the run the X/Y grid and the suggested epoch (lrfind.final.after_run).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

from lrfind.artifacts.final_summary import FinalSummary
from lrfind.cache import TensorStore, default_cache_dir
from lrfind.data.kohya import scan_dataset
from lrfind.data.types import with_repeats
from lrfind.errors import ConfigError, DiskFullError, LrfindWarning
from lrfind.final.after_run import GRID_PROMPTS, finish_final_run
from lrfind.final.epochs import EpochWatch, read_records, sample_prompts_for
from lrfind.scoring.drift import drift_probe_on_device, measure_drift
from lrfind.models.loading import load_components
from lrfind.outputs import Need, check_free_space, saved_lora_files, train_output_bytes
from lrfind.scoring.clip import scorer_for
from lrfind.scoring.samples import load_training_images
from lrfind.training.callbacks import EpochCheckpoint, ProgressBar, TensorBoardLogger
from lrfind.training.checks import check_cache_space, check_run_length, preflight
from lrfind.training.config import TrainConfig
from lrfind.training.lora_files import lora_file_path, save_network
from lrfind.training.loop import run_loop
from lrfind.training.setup import lora_run
from lrfind.training.state import find_resume_folder, load_state, save_state, state_folder


@dataclass(frozen=True)
class FinalRun:
    """What a final run made: its LoRA files, the suggested epoch, and how the loop ended."""

    output_path: Path  # the final LoRA file
    saved: list[Path]  # every LoRA file written, the final one last
    state: Any  # LoopState: steps, epochs, the last validation loss
    logdir: Optional[Path] = None  # TensorBoard logs
    seconds: float = 0.0
    summary: Optional[FinalSummary] = None  # NAME_final.json; None in a data-parallel run's other processes
    resumed_from: Optional[Path] = None  # the state folder the run continued from
    processes: int = 1  # data-parallel processes
    main_process: bool = True  # False: another process writes the files and reports

    @property
    def suggested_file(self) -> Optional[Path]:
        """The suggested epoch's LoRA file (lrfind.final.xy_grid.suggest_epoch says why)."""
        return self.output_path.parent / self.summary.suggested_file if self.summary is not None else None


def check_output_space(config: TrainConfig, lora_params: int, epochs: int, prompts: int, grid_prompts: int) -> None:
    """Room in --output-dir for the LoRA files, states, samples and X/Y grid this run will write."""
    files = saved_lora_files(epochs, config.save_every_n_epochs)
    every = config.sample_every_n_epochs
    sampled_epochs = (epochs // every + (epochs % every != 0)) if every else 0
    grid = min(prompts, grid_prompts) * files * len(config.xy_grid_weights) if config.xy_grid and every else 0
    need = train_output_bytes(lora_params, config.save_precision, files, config.save_state, config.optimizer.type,
                              prompts * sampled_epochs, config.dataset.resolution, grid)
    check_free_space([Need(config.output_dir, need, "--output-dir")])


def with_concept_repeats(dataset, config: TrainConfig):
    """The dataset with config.concept_repeats applied (a study's recommended repeats)."""
    if not config.concept_repeats:
        return dataset
    folders = {c.folder.name for c in dataset.concepts}
    unknown = sorted(set(config.concept_repeats) - folders)
    if unknown:
        raise ConfigError(f"{Path(config.dataset.train_dir) / unknown[0]}: no such concept folder for "
                          f"concept_repeats; the dataset has {', '.join(sorted(folders))}")
    return with_repeats(dataset, dict(config.concept_repeats))


def _scorer_and_reference(config: TrainConfig, components, dataset):
    """CLIP for CLIP-I per sampled epoch: --clip, else the tiny CLIP for the tiny model, else none."""
    if not config.sample_every_n_epochs:
        return None, None
    scorer = scorer_for(components, config.clip, allow_pickle=config.model.allow_pickle)
    if scorer is None:
        return None, None
    return scorer, scorer.image_embeddings(load_training_images(dataset))


def _drift_probe(config: TrainConfig, components, dataset):
    """With held-out images (--validation-split) the suggested epoch weighs drift as a study's
    epoch sweep does, so each epoch's drift is measured; without, nothing (the run costs what it did)."""
    if not config.validation_split:
        return None
    return drift_probe_on_device(components, dataset, config.dataset.resolution, clip_skip=config.model.clip_skip,
                                 max_token_length=config.model.max_token_length, mixed_precision=config.mixed_precision)


def _base_loss(parts):
    """With held-out images: their loss before the first step (the LoRA is fresh, so the base
    model's), which the report's final-run diagnosis measures the curve against; one validation pass."""
    if parts.validation is None:
        return None
    return lambda: parts.validation.loss(parts.unet, parts.conditioner, parts.device, parts.dtype)


def train_lora(config: TrainConfig, *, components=None, dataset=None, store=None,
               callbacks: Sequence[Any] = ()) -> FinalRun:
    preflight(config)
    resume_folder = find_resume_folder(config)
    dataset = with_concept_repeats(dataset or scan_dataset(config.dataset), config)
    check_run_length(config, dataset)
    prompts = sample_prompts_for(config, dataset) if config.sample_every_n_epochs else []
    components = components or load_components(config.model)
    store = store or TensorStore(config.cache_dir or default_cache_dir())
    scorer, reference = _scorer_and_reference(config, components, dataset)
    check_cache_space(config, components, dataset, store)
    drift_probe = _drift_probe(config, components, dataset)
    started = time.time()
    with lora_run(config, components, dataset, store) as parts:
        state = load_state(resume_folder, config, parts) if resume_folder else None
        epochs = -(-parts.total_steps // parts.steps_per_epoch)
        check_output_space(config, parts.network.trainable_parameter_count(), epochs, len(prompts), GRID_PROMPTS)
        watch = EpochWatch(config, components, prompts, scorer, reference, last_epoch=epochs,
                           records=read_records(config, state.epoch) if state else None,
                           drift=(lambda: measure_drift(drift_probe, parts)) if drift_probe else None,
                           base_loss=_base_loss(parts) if drift_probe else None)
        files = _RunFiles(config, parts, dataset, components, started)
        # Order matters at an epoch end: LoRA file (the final one at the last epoch), then records,
        # then the state that says "done": a full disk stops the run with every LoRA file complete.
        all_callbacks = [files, *_run_callbacks(config, files, epochs), watch, *callbacks, _StateSaver(files)]
        if not parts.group.is_main:  # data-parallel: the main process alone writes, samples and logs
            all_callbacks = list(callbacks)
        state = run_loop(parts, all_callbacks, state)
        if not parts.group.is_main:
            return FinalRun(lora_file_path(config), [], state, None, time.time() - started,
                               processes=parts.group.world_size, main_process=False)
        final = files.final or files.save(lora_file_path(config), state)  # resumed from the last epoch's state
    summary = finish_final_run(config, components, watch.records, prompts, state.epoch,
                               scorer.calibrated if scorer else None)
    return FinalRun(final, files.saved + [final], state, files.logdir, time.time() - started, summary=summary,
                       resumed_from=resume_folder, processes=parts.group.world_size)


def _run_callbacks(config: TrainConfig, files: "_RunFiles", epochs: int) -> list:
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
        self.final: Optional[Path] = None

    def on_train_start(self, state) -> None:
        self.state = state

    def on_epoch_end(self, state) -> None:
        if state.step >= state.total_steps:  # the last epoch: its LoRA before its records and state
            self.final = self.save(lora_file_path(self.config), state)

    def save_epoch(self, epoch: int) -> None:
        self.saved.append(self.save(lora_file_path(self.config, epoch), self.state))

    def save(self, path: Path, state) -> Path:
        return save_network(path, self.parts, self.config, self.dataset, self.components, state, self.started)


class _StateSaver:
    """The last callback: the resumable state of each finished epoch (kohya's --save_state).

    A full disk while writing a state does not stop the run: the epoch's LoRA file is already
    complete, the state is skipped with a warning (the previous state is kept, so --resume still
    works from there), and training goes on; if the disk stays full, the next LoRA file's write
    ends the run with DiskFullError, every LoRA file written so far complete.
    """

    def __init__(self, files: _RunFiles):
        self.files = files

    def on_epoch_end(self, state) -> None:
        if not self.files.config.save_state:
            return
        try:
            save_state(self.files.config, self.files.parts, state)
        except DiskFullError as err:
            warnings.warn(f"resumable state {state_folder(self.files.config, state.epoch)} not written, training "
                          f"goes on ({err}); the LoRA files are complete", LrfindWarning, stacklevel=1)
