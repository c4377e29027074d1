"""StudyConfig: the options of `lrfind study`, validated once at the CLI.

The dataset and model are the shared parts (lrfind.config); `lrfind study`'s flags keep their flat
names (--model, --caption-extension) through the table in lrfind.cli.study_cmd. The space fixes
the resolution and batch size each trial (and the study's probe) trains at, so the dataset part's
resolution and batch size are not the study's options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from lrfind.config import DatasetConfig, ModelConfig, Seed, StrictModel
from lrfind.data.holdout import DEFAULT_VALIDATION_SPLIT, MIN_IMAGES_TO_HOLD_OUT
from lrfind.training.run_options import StudyTrainOptions

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def parse_duration(text: str | float | int | None) -> Optional[float]:
    """'8h', '90m', '1h30m', '45s', '3600' -> seconds."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = _DURATION.match(str(text).lower())
    if not match or not any(match.groups()):
        raise ValueError(f"duration {text!r} is not like 8h, 90m, 1h30m or 3600 (seconds)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class StudyConfig(StrictModel):
    dataset: DatasetConfig
    name: str
    model: ModelConfig = ModelConfig()
    space: str = "character"  # a preset name (configs/<name>.toml) or a TOML path
    n_trials: int = Field(20, ge=1)
    timeout: Optional[str] = None
    storage: Optional[str] = None  # default sqlite:///studies/NAME.db; with several workers journal:///studies/NAME.journal
    # several local worker processes on one study (lrfind.study.workers): N on the CPU, or one per
    # device given (CUDA_VISIBLE_DEVICES tokens, e.g. "0,1")
    workers: int = Field(1, ge=1, le=256)
    # trials trained together in one process, their LoRAs in one batched forward (lrfind.study.cohort_trials)
    trials_at_once: int = Field(1, ge=1, le=64)
    devices: Optional[str] = None
    trial_budget: Optional[int] = Field(None, ge=1)
    clip: Optional[Path] = None
    # a local transformers DINO/DINOv2 folder: adds the DINO term (lrfind.scoring.dino) to the objective
    dino: Optional[Path] = None
    score: Literal["full", "loss"] = "full"
    pruner: Literal["hyperband", "median", "none"] = "hyperband"
    sampler: Literal["auto", "gp", "tpe"] = "auto"  # lrfind.study.samplers
    pareto: bool = False
    seed: Seed = 42
    # "same": every trial trains with --seed (same LoRA init, noise and timesteps), so trials differ
    # only by their parameters (paired comparison, less noise); "per-trial": --seed + trial number.
    trial_seed: Literal["same", "per-trial"] = "same"
    # "sweep": constant-lr trials train the space's most epochs and take their best epoch boundary
    # (lrfind.study.epoch_sweep); "sample": epochs is sampled like any parameter, one run per count.
    epoch_mode: Literal["sweep", "sample"] = "sweep"
    sampler_seed: Optional[Seed] = None  # None: --seed mixed with the process id (workers must differ)
    cache_dir: Optional[Path] = None
    out: Optional[Path] = None  # default studies/NAME
    probe_steps: int = Field(200, ge=8)
    heartbeat_interval: int = Field(30, ge=1)
    grace_period: int = Field(120, ge=2)
    progress: bool = True
    # held-out images (lrfind.data.holdout, lrfind.study.held_out): no trial trains on them; every
    # trial and the baseline validate on them. A share of each concept folder with at least
    # validation_min_images images, or the images of validation_dir (kohya layout) instead.
    validation_split: float = Field(DEFAULT_VALIDATION_SPLIT, ge=0, lt=1)
    validation_min_images: int = Field(MIN_IMAGES_TO_HOLD_OUT, ge=2)
    validation_dir: Optional[Path] = None
    torch_compile: bool = False  # each trial's UNet through torch.compile (its compile time counts)
    # lrfind train's run-wide options (and the space's fixed dimensions) as given: they override the
    # space's [fixed] (lrfind.study.overrides); the command line flattens them to train's flag names
    run: StudyTrainOptions = StudyTrainOptions()

    @field_validator("name")
    @classmethod
    def _plain(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
            raise ValueError(f"study name {v!r}: use letters, digits, '.', '_' and '-' (it names files)")
        return v

    @field_validator("devices")
    @classmethod
    def _devices(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        tokens = [t.strip() for t in v.split(",")]
        if not all(tokens) or len(set(tokens)) != len(tokens):
            raise ValueError(f"devices {v!r}: give distinct device ids separated by commas, e.g. 0,1")
        return ",".join(tokens)

    @model_validator(mode="after")
    def _worker_count(self) -> "StudyConfig":
        if self.devices is not None and self.workers not in (1, len(self.device_list)):
            raise ValueError(f"--workers {self.workers} and --devices {self.devices}: one worker runs per device; "
                             "give only --devices")
        return self

    @property
    def device_list(self) -> list[str]:
        return self.devices.split(",") if self.devices else []

    @property
    def worker_count(self) -> int:
        return len(self.device_list) or self.workers

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: Optional[str]) -> Optional[str]:
        parse_duration(v)
        return v

    @property
    def timeout_seconds(self) -> Optional[float]:
        return parse_duration(self.timeout)

    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("studies") / self.name

    def storage_url(self) -> str:
        """--storage; else the study's journal (lrfind.study.journal) when several workers share it or
        it already exists and no sqlite file does; else the sqlite file beside the study folder."""
        from lrfind.study.journal import JOURNAL_SUFFIX, journal_url  # lazy: lrfind --help loads this module

        if self.storage:
            return self.storage
        base = self.out_dir().parent / self.name
        sqlite_file, journal_file = base.with_name(self.name + ".db"), base.with_name(self.name + JOURNAL_SUFFIX)
        if not sqlite_file.exists() and (self.worker_count > 1 or journal_file.exists()):
            return journal_url(journal_file)
        return f"sqlite:///{sqlite_file.as_posix()}"
