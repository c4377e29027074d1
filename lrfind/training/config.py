"""TrainConfig: every option of a LoRA training run, its shared parts nested.

The dataset, model, network, optimizer and schedule are the shared parts (lrfind.config,
lrfind.network.config); the rest is the run's own. kohya's flat names (train_data_dir,
network_dim, ...) are the edges' spelling: the CLI flags and TOML files map onto these fields
through one table (lrfind.training.kohya_names). Derived values (steps, per-group learning rates)
are functions of this object, never stored in it. When the loop validates beyond
--validate-every-n-steps is plan data (lrfind.training.plan), not an option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from lrfind.config import DatasetConfig, ModelConfig, OptimizerConfig, SchedulerConfig, Seed, StrictModel
from lrfind.network.config import NetworkConfig

VALIDATION_TIMESTEPS = (200, 400, 600, 800)


class TrainConfig(StrictModel):
    dataset: DatasetConfig
    model: ModelConfig = ModelConfig()
    network: NetworkConfig = NetworkConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    prior_loss_weight: float = Field(1.0, ge=0, allow_inf_nan=False)
    cache_dir: Optional[Path] = None
    max_train_steps: Optional[int] = Field(None, ge=1)
    max_train_epochs: Optional[int] = Field(None, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    gradient_checkpointing: bool = False
    torch_compile: bool = False  # kohya's --torch_compile: torch.compile the UNet (compile time counts)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    seed: Seed = 42
    noise_offset: float = Field(0.0, ge=0, allow_inf_nan=False)
    min_snr_gamma: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    # --- validation ---
    validation_split: float = Field(0.0, ge=0, lt=1)
    validation_timesteps: tuple[int, ...] = VALIDATION_TIMESTEPS
    validation_seed: Seed = 0
    validate_every_n_steps: Optional[int] = Field(None, ge=1)  # a study's trials: lrfind.training.plan
    # --- output ---
    output_dir: Path = Path("output")
    output_name: str = "last"
    save_every_n_epochs: Optional[int] = Field(None, ge=1)
    save_precision: Literal["fp16", "bf16", "float"] = "fp16"
    logging_dir: Optional[Path] = None
    progress: bool = True
    # --- repeats set by lrfind (a study's recommendation), not by the folder's N_ prefix ---
    concept_repeats: dict[str, int] = Field(default_factory=dict)  # "10_mychar" -> repeats
    # --- samples, X/Y grid and the suggested epoch (kohya's sample_* names where kohya has them) ---
    sample_every_n_epochs: Optional[int] = Field(None, ge=1)
    sample_prompts: Optional[Path] = None  # one prompt a line, "--d SEED" optional; default: trigger + scenes
    sample_steps: int = Field(20, ge=1, le=200)
    xy_grid: bool = True  # after the run: saved epochs x LoRA weights, when there are samples
    xy_grid_weights: tuple[float, ...] = (0.4, 0.6, 0.8, 1.0)
    clip: Optional[Path] = None  # local CLIP folder: CLIP-I per sampled epoch (tiny model: tiny CLIP)
    # --- resuming (kohya: --save_state / --resume) ---
    save_state: bool = True  # a state folder at each epoch end; only the newest is kept
    resume: Optional[str] = None  # a state folder, or "last": this run's newest

    @field_validator("output_name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v or "\\" in v or v.startswith("."):
            raise ValueError(f"output name {v!r} must be a plain file name without folders, e.g. mychar")
        return v

    @field_validator("concept_repeats")
    @classmethod
    def _repeats(cls, v: dict[str, int]) -> dict[str, int]:
        bad = [f"{k}={n}" for k, n in v.items() if not isinstance(n, int) or n < 1]
        if bad:
            raise ValueError(f"concept repeats must be whole numbers >= 1: {', '.join(bad)}")
        return v

    @field_validator("xy_grid_weights")
    @classmethod
    def _weights(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 <= w <= 4 for w in v):
            raise ValueError("X/Y grid weights must be a non-empty list of numbers in 0..4, e.g. 0.4 0.6 0.8 1")
        return v

    @field_validator("validation_timesteps")
    @classmethod
    def _timesteps(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(not 0 <= t < 1000 for t in v):
            raise ValueError("validation timesteps must be a non-empty list of integers in 0..999")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.max_train_steps is None and self.max_train_epochs is None:
            # kohya's default is 1600 steps; we ask instead of guessing a long CPU run.
            raise ValueError("set max_train_epochs or max_train_steps")
        return self
