"""Validated configuration objects, built once at the CLI and passed down.

The shared parts that each command's config nests (lrfind.training.config.TrainConfig,
lrfind.probe.config.ProbeConfig, lrfind.study.config.StudyConfig) rather than respelling their
fields: DatasetConfig, ModelConfig, OptimizerConfig, SchedulerConfig here, and NetworkConfig in
lrfind.network.config (it names the registered network types, and lrfind.network imports this
module's dataset part). kohya's flat spelling (network_dim, train_data_dir, ...) lives only at the
edges: CLI flags and TOML files in and out (lrfind.training.kohya_names).

Nothing below the CLI sees argparse objects. Every model forbids unknown keys, so a typo in a
TOML config is an error rather than a silently ignored option. Derived values (total steps,
scaled learning rates) are computed by functions from these objects, never written back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Mapping, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from lrfind.errors import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


# Seeds reach numpy (Optuna's samplers; kohya's set_seed), whose range is 0..2**32-1; torch would
# take up to 2**64-1, but one range for every seed is simpler to state.
SEED_MAX = 2**32 - 1


def _seed_in_range(value: int) -> int:
    if not 0 <= value <= SEED_MAX:
        raise ValueError(f"seed {value} is out of range: use a whole number from 0 to {SEED_MAX} (2**32 - 1)")
    return value


Seed = Annotated[int, AfterValidator(_seed_in_range)]


def parse_resolution(value):
    """kohya's resolution forms: 512, "512", "512,512" (kohya's "width,height"), "512x512", [512, 512].

    lrfind trains square base resolutions (aspect-ratio buckets handle non-square images), so a
    pair must have equal sides; 512,768 is refused with what to pass instead.
    """
    if isinstance(value, bool):
        return value  # pydantic rejects it with its own message
    if isinstance(value, (list, tuple)):
        parts = list(value)
    elif isinstance(value, str):
        parts = [p.strip() for p in value.lower().replace("x", ",").split(",")]
    else:
        return value
    try:
        sides = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"resolution {value!r} is not like 512, 512,512 or 512x512") from None
    if len(sides) == 1 or (len(sides) == 2 and sides[0] == sides[1]):
        return sides[0]
    if len(sides) == 2:
        raise ValueError(f"resolution {sides[0]},{sides[1]}: lrfind trains a square base resolution with "
                         f"aspect-ratio buckets (non-square images keep their shape); give one side, e.g. "
                         f"{max(sides)} (or {sides[0]},{sides[0]})")
    raise ValueError(f"resolution {value!r} is not like 512, 512,512 or 512x512")


Resolution = Annotated[int, BeforeValidator(parse_resolution)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(StrictModel):
    """A kohya-layout dataset: DATASET/<repeats>_<name>/<image> + <image stem><caption_extension>."""

    train_dir: Path
    reg_dir: Optional[Path] = None
    caption_extension: str = ".txt"
    resolution: Resolution = 512
    batch_size: int = Field(1, ge=1)
    enable_bucket: bool = True
    min_bucket_reso: Optional[int] = None
    max_bucket_reso: Optional[int] = None
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False
    # Refuse images upscaled more than 2x into their bucket (kohya trains them; we only warn).
    strict_image_size: bool = False
    # how the training loop reads each image (kohya's subset options)
    shuffle_caption: bool = False
    keep_tokens: int = Field(0, ge=0)
    flip_aug: bool = False

    @field_validator("caption_extension")
    @classmethod
    def _dot(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("caption extension must not be empty, e.g. .txt or .caption")
        return v if v.startswith(".") else "." + v

    @field_validator("resolution")
    @classmethod
    def _res(cls, v: int) -> int:
        if v < 64 or v % 64:
            raise ValueError(f"resolution {v} must be a positive multiple of 64 (e.g. 512, 768)")
        return v

    @model_validator(mode="after")
    def _buckets(self) -> "DatasetConfig":
        lo, hi = self.bucket_range
        if lo % self.bucket_reso_steps or hi % self.bucket_reso_steps:
            raise ValueError(
                f"min/max bucket resolution ({lo}, {hi}) must be multiples of {self.bucket_reso_steps}"
            )
        if not lo <= self.resolution <= hi:
            raise ValueError(
                f"resolution {self.resolution} must lie between min_bucket_reso {lo} and max_bucket_reso {hi}"
            )
        return self

    @property
    def bucket_range(self) -> tuple[int, int]:
        """kohya's defaults (256, 1024), widened so that small resolutions (the tiny model) fit."""
        # Half the resolution at small sizes, so the tiny model (64-128 px) still gets aspect buckets.
        half = max(self.bucket_reso_steps, self.resolution // 2 // self.bucket_reso_steps * self.bucket_reso_steps)
        lo = self.min_bucket_reso if self.min_bucket_reso is not None else min(256, half)
        hi = self.max_bucket_reso if self.max_bucket_reso is not None else max(1024, self.resolution)
        return lo, hi


class ModelConfig(StrictModel):
    """Which base model to load (`tiny`, a diffusers folder, or a single checkpoint file), and how
    training treats it."""

    model: str = "tiny"
    allow_pickle: bool = False
    seed: Seed = 0  # only used by the tiny model's random init
    v_parameterization: bool = False
    # kohya's --zero_terminal_snr: the training noise schedule rescaled so its last step is pure
    # noise (Lin et al. 2023), for v-prediction models trained that way (NoobAI-XL v-pred and kin)
    zero_terminal_snr: bool = False
    clip_skip: int = Field(1, ge=1)
    max_token_length: Literal[75, 150, 225] = 75


class OptimizerConfig(StrictModel):
    """The optimizer and its learning rates (kohya's optimizer_type, optimizer_args, *_lr)."""

    type: str = "AdamW"
    args: dict[str, object] = Field(default_factory=dict)
    learning_rate: float = Field(1e-4, gt=0, allow_inf_nan=False)
    unet_lr: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    text_encoder_lr: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    # kohya clips the LoRA's gradient norm at 1.0 unless told otherwise (0: no clipping); the same
    # default here, so the lr a study finds is the lr of the run kohya makes from its export
    max_grad_norm: float = Field(1.0, ge=0, allow_inf_nan=False)

    @property
    def effective_unet_lr(self) -> float:
        return self.unet_lr if self.unet_lr is not None else self.learning_rate

    @property
    def effective_text_encoder_lr(self) -> float:
        return self.text_encoder_lr if self.text_encoder_lr is not None else self.learning_rate


class SchedulerConfig(StrictModel):
    """The learning-rate schedule (kohya's lr_scheduler, lr_warmup_steps, lr_scheduler_*)."""

    name: str = "constant"
    warmup_steps: int = Field(0, ge=0)
    num_cycles: int = Field(1, ge=1)
    power: float = Field(1.0, gt=0, allow_inf_nan=False)


def format_validation_error(err: ValidationError, source: str = "", names: Mapping[tuple, str] | None = None) -> str:
    """One line naming each bad field and why, for the CLI. `names`: a nested field's path -> the
    name the user wrote (kohya's flat key, lrfind.training.kohya_names); a part's own check (path:
    the part alone) is named by its message."""
    parts = []
    for e in err.errors():
        path = tuple(x for x in e.get("loc", ()) if x != "__root__")
        if names and path in names:
            path = (names[path],)
        elif names and len(path) == 1 and any(len(k) > 1 and k[0] == path[0] for k in names):
            path = ()
        loc = ".".join(str(x) for x in path) or "config"
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            msg = "unknown option (check the spelling; see --help)"
        parts.append(f"{loc}: {msg}")
    prefix = f"{source}: " if source else ""
    return prefix + "; ".join(parts)


def build(model_cls, source: str = "", names: Mapping[tuple, str] | None = None, **values):
    """Build a config object, turning validation errors into one-line ConfigErrors."""
    try:
        return model_cls(**values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, names)) from None


def nest_flat(flat, table) -> dict:
    """Flat option values -> a config's nested values, by a table of flat name -> field path
    (("network", "dim") for network_dim); a key not in the table stays at the top, for the config
    to refuse by name. Used by the CLI tables and kohya's (lrfind.training.kohya_names)."""
    nested: dict = {}
    for key, value in flat.items():
        *parts, name = table.get(key, (key,))
        target = nested
        for part in parts:
            target = target.setdefault(part, {})
        target[name] = value
    return nested
