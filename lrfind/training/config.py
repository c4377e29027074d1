"""TrainConfig: every option of a LoRA training run, with kohya sd-scripts' names.

Field names are kohya's underscore spellings, so a kohya `--config_file` TOML (flat or in
kohya's sections) reads as is; the CLI offers each as `--dash-name` and `--underscore_name`.
Derived values (steps, per-group learning rates) are functions of this object, never stored in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from lrfind.config import DatasetConfig, ModelConfig, Resolution, Seed, StrictModel
from lrfind.network.types import NetworkModuleName, check_network_args

VALIDATION_TIMESTEPS = (200, 400, 600, 800)


class TrainConfig(StrictModel):
    # --- data (kohya layout) ---
    train_data_dir: Path
    reg_data_dir: Optional[Path] = None
    prior_loss_weight: float = Field(1.0, ge=0, allow_inf_nan=False)
    caption_extension: str = ".txt"
    resolution: Resolution = 512
    enable_bucket: bool = True
    min_bucket_reso: Optional[int] = None
    max_bucket_reso: Optional[int] = None
    bucket_no_upscale: bool = False
    shuffle_caption: bool = False
    keep_tokens: int = Field(0, ge=0)
    flip_aug: bool = False
    cache_dir: Optional[Path] = None
    # --- model ---
    pretrained_model_name_or_path: str = "tiny"
    allow_pickle: bool = False
    v_parameterization: bool = False
    # kohya's --zero_terminal_snr: the training noise schedule rescaled so its last step is pure
    # noise (Lin et al. 2023), for v-prediction models trained that way (NoobAI-XL v-pred and kin)
    zero_terminal_snr: bool = False
    clip_skip: int = Field(1, ge=1)
    max_token_length: Literal[75, 150, 225] = 75
    # --- network ---
    network_module: NetworkModuleName = "networks.lora"  # the registered types' modules
    network_dim: int = Field(8, ge=1, le=1024)
    network_alpha: float = Field(1.0, gt=0, allow_inf_nan=False)
    network_train_unet_only: bool = False  # kohya trains the text encoder too unless told not to
    network_weights: Optional[Path] = None
    network_args: dict[str, object] = Field(default_factory=dict)  # kohya's --network_args k=v ...
    network_dropout: Optional[float] = Field(None, ge=0, lt=1)  # kohya's: dropout after lora_down
    # --- optimizer and schedule ---
    optimizer_type: str = "AdamW"
    optimizer_args: dict[str, object] = Field(default_factory=dict)
    learning_rate: float = Field(1e-4, gt=0, allow_inf_nan=False)
    unet_lr: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    text_encoder_lr: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = Field(0, ge=0)
    lr_scheduler_num_cycles: int = Field(1, ge=1)
    lr_scheduler_power: float = Field(1.0, gt=0, allow_inf_nan=False)
    max_train_steps: Optional[int] = Field(None, ge=1)
    max_train_epochs: Optional[int] = Field(None, ge=1)
    train_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    # kohya clips the LoRA's gradient norm at 1.0 unless told otherwise (0: no clipping); the same
    # default here, so the lr a study finds is the lr of the run kohya makes from its export
    max_grad_norm: float = Field(1.0, ge=0, allow_inf_nan=False)
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
        if self.shuffle_caption and self.keep_tokens < 0:
            raise ValueError("keep_tokens must be >= 0")
        self.dataset_config()  # validates resolution and bucket options with their own messages
        check_network_args(self.network_module, self.network_args)  # ConfigError naming the arg
        return self

    # --- views for the parts below; nothing is written back ---
    def dataset_config(self) -> DatasetConfig:
        return DatasetConfig(
            train_dir=self.train_data_dir,
            reg_dir=self.reg_data_dir,
            caption_extension=self.caption_extension,
            resolution=self.resolution,
            batch_size=self.train_batch_size,
            enable_bucket=self.enable_bucket,
            min_bucket_reso=self.min_bucket_reso,
            max_bucket_reso=self.max_bucket_reso,
            bucket_no_upscale=self.bucket_no_upscale,
        )

    def base_model_config(self) -> ModelConfig:
        return ModelConfig(model=self.pretrained_model_name_or_path, allow_pickle=self.allow_pickle, seed=0)

    @property
    def effective_unet_lr(self) -> float:
        return self.unet_lr if self.unet_lr is not None else self.learning_rate

    @property
    def effective_text_encoder_lr(self) -> float:
        return self.text_encoder_lr if self.text_encoder_lr is not None else self.learning_rate

    @property
    def trains_text_encoder(self) -> bool:
        return not self.network_train_unet_only
