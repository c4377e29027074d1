"""Validated configuration objects, built once at the CLI and passed down.

Nothing below the CLI sees argparse objects. Every model forbids unknown keys, so a typo in a
TOML config is an error rather than a silently ignored option. Derived values (total steps,
scaled learning rates) are computed by functions from these objects, never written back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lrfind.errors import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(StrictModel):
    """A kohya-layout dataset: DATASET/<repeats>_<name>/<image> + <image stem><caption_extension>."""

    train_dir: Path
    reg_dir: Optional[Path] = None
    caption_extension: str = ".txt"
    resolution: int = 512
    batch_size: int = Field(1, ge=1)
    enable_bucket: bool = True
    min_bucket_reso: Optional[int] = None
    max_bucket_reso: Optional[int] = None
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False
    # Refuse images upscaled more than 2x into their bucket (kohya trains them; we only warn).
    strict_image_size: bool = False

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
    """Which base model to load: `tiny`, a diffusers folder, or a single checkpoint file."""

    model: str = "tiny"
    allow_pickle: bool = False
    seed: int = 0  # only used by the tiny model's random init


def format_validation_error(err: ValidationError, source: str = "") -> str:
    """One line naming each bad field and why, for the CLI."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "__root__") or "config"
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            msg = "unknown option (check the spelling; see --help)"
        parts.append(f"{loc}: {msg}")
    prefix = f"{source}: " if source else ""
    return prefix + "; ".join(parts)


def build(model_cls, source: str = "", **values):
    """Build a config object, turning validation errors into one-line ConfigErrors."""
    try:
        return model_cls(**values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
