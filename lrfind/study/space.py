"""The study's search space: a TOML file (or a shipped preset) read into `SearchSpace`. Pure.

Each searched dimension is written in one of three ways (every form is validated):

    network_dim = 16                          # fixed: every trial uses 16
    network_dim = [8, 16, 32]                 # choices (Optuna: suggest_categorical)
    epochs = { range = [6, 12] }              # int range, optional step (suggest_int)
    lr_multiplier = { range = [0.25, 4.0] }   # float range, sampled log-uniformly (suggest_float log=True)

(`[epochs]` with `range = [6, 12]` on the next line is the same as the inline table.)

Dimensions and their Optuna parameter names (stable: optuna-dashboard and the report show them):
- `network_dim`                         int: the LoRA rank.
- `network_alpha_fraction`              float in (0, 1]: network_alpha = fraction x dim (3 significant
                                        digits), so alpha <= dim always holds.
- `epochs`                              int.
- `repeats`                             int: repeats of the concept with the most folder repeats; the
                                        others keep their ratio to it (see lrfind.study.stats). Left
                                        out: every trial keeps the folders' repeats (no parameter).
- `lr_multiplier`                       float: x the probe's unet_lr (AdamW, Lion); for Prodigy it is
                                        d_coef (Prodigy has no lr to pick). Default: fixed 1.0.
- `optimizer`                           AdamW | Lion | Prodigy (those with an lr rule in
                                        lrfind.optimizers). Default: AdamW.
- `lr_scheduler`                        kohya's scheduler names. Default: constant.
- `network_type`                        lora | locon | lycoris_locon | loha | lokr (lrfind.network.types:
                                        kohya's networks.lora with/without conv_dim, LyCORIS algos).
                                        Default: lora.
- `conv_dim_fraction`                   float in (0, 1]: conv_dim = fraction x dim (conv_alpha keeps the
                                        alpha fraction); asked only of types with convs. Left out:
                                        each type's own default (conv_dim = dim).
- `lokr_factor`                         int >= 2: LoKr's factor; asked only of lokr trials (a type's
                                        `space_args`). Left out: lycoris' -1 (the most balanced
                                        factorisation).
Sections: `[fixed]` (settings of every trial: lrfind train's run-wide options such as resolution,
train_batch_size, enable_bucket, clip_skip, mixed_precision, plus the lr rules of FixedSettings), `[objective]` (weights of the scalar objective, the
same names as lrfind.study.scoring.ObjectiveWeights: loss, drift, clip_i, clip_t, and dino, which has
effect only with `lrfind study --dino DIR`) and `[budget]`.
The dimensions' forms: lrfind.study.dimensions; one trial's point and how Optuna is asked for it:
lrfind.study.trial_params; how a trial's parameters become training values: lrfind.study.trial_values.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from pydantic import Field, ValidationError, field_validator, model_validator

from lrfind.config import StrictModel, format_validation_error
from lrfind.errors import ConfigError
from lrfind.network.types import conv_type_names, network_type_names, space_arg_types
from lrfind.optimizers import study_optimizer_names
from lrfind.probe.derive import DEFAULT_RESCALE_RULE
from lrfind.probe.derive import RESCALE_RULES, TEXT_ENCODER_FRACTION
from lrfind.study.dimensions import (TYPE_ARG_DIMENSIONS, FloatDimension, IntDimension, NameDimension, canonical_names,
                                     shorthand, type_arg_in_range)
from lrfind.training.run_options import RUN_WIDE, RunOptions
from lrfind.training.schedulers import scheduler_names

PRESET_PACKAGE = "lrfind.study"
PRESET_FOLDER = "presets"


class FixedSettings(RunOptions):
    """Settings every trial (and the recommended full run) shares: lrfind train's run-wide options
    (lrfind.training.run_options, the same names and defaults; `lrfind study --resolution ...`
    overrides them, lrfind.study.overrides) and the study's own lr rules below."""

    text_encoder_lr_fraction: float = Field(TEXT_ENCODER_FRACTION, gt=0, le=1)  # of unet_lr
    weight_decay: float = Field(0.01, ge=0, allow_inf_nan=False)  # AdamW's; Lion x its weight_decay_factor
    lr_warmup_fraction: float = Field(0.0, ge=0, lt=1)  # of the run's steps; none with "constant"
    lr_rescale_rule: str = DEFAULT_RESCALE_RULE  # one of lrfind.probe.derive.RESCALE_RULES

    def train_values(self) -> dict:
        """The run-wide TrainConfig values (JSON types: they are stored with each trial)."""
        return self.model_dump(mode="json", include=set(RUN_WIDE))

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: int) -> int:
        if v < 64 or v % 64:
            raise ValueError(f"resolution {v} must be a positive multiple of 64 (e.g. 512, 768)")
        return v

    @field_validator("lr_rescale_rule")
    @classmethod
    def _rule(cls, v: str) -> str:
        if v not in RESCALE_RULES:
            raise ValueError(f"unknown rescale rule {v!r}; use one of {', '.join(RESCALE_RULES)}")
        return v


class ObjectiveSettings(StrictModel):
    """Weights of the scalar objective: the fields and defaults of lrfind.study.scoring.ObjectiveWeights
    (which defines how they combine); kept here so that a space TOML is validated in one place."""

    loss: float = Field(1.0, ge=0, allow_inf_nan=False)
    drift: float = Field(1.0, ge=0, allow_inf_nan=False)
    clip_i: float = Field(0.5, ge=0, allow_inf_nan=False)
    clip_t: float = Field(0.25, ge=0, allow_inf_nan=False)
    dino: float = Field(0.5, ge=0, allow_inf_nan=False)  # only with --dino; not one of the "some weight" three

    @model_validator(mode="after")
    def _some_weight(self) -> "ObjectiveSettings":
        if self.loss == self.clip_i == self.clip_t == 0:
            raise ValueError("at least one of loss, clip_i, clip_t must have a weight above 0")
        return self


class BudgetSettings(StrictModel):
    trial_budget_steps: int = Field(200, ge=1)  # steps of the space's longest trial
    eval_every_steps: int = Field(25, ge=1)  # validation loss reported to the pruner

    @model_validator(mode="after")
    def _fits(self) -> "BudgetSettings":
        if self.eval_every_steps > self.trial_budget_steps:
            raise ValueError(
                f"eval_every_steps {self.eval_every_steps} is more than trial_budget_steps "
                f"{self.trial_budget_steps}: the pruner would see no value; lower it"
            )
        return self


class SearchSpace(StrictModel):
    description: str = ""
    network_dim: IntDimension
    network_alpha_fraction: FloatDimension
    epochs: IntDimension
    repeats: Optional[IntDimension] = None
    lr_multiplier: FloatDimension = FloatDimension(choices=[1.0])
    optimizer: NameDimension = NameDimension(choices=["AdamW"])
    lr_scheduler: NameDimension = NameDimension(choices=["constant"])
    network_type: NameDimension = NameDimension(choices=["lora"])
    conv_dim_fraction: Optional[FloatDimension] = None
    lokr_factor: Optional[IntDimension] = None
    fixed: FixedSettings = FixedSettings()
    objective: ObjectiveSettings = ObjectiveSettings()
    budget: BudgetSettings = BudgetSettings()

    @field_validator("network_dim", "network_alpha_fraction", "epochs", "repeats", "lr_multiplier",
                     "optimizer", "lr_scheduler", "network_type", "conv_dim_fraction", "lokr_factor",
                     mode="before")
    @classmethod
    def _short_forms(cls, v: Any) -> Any:
        return shorthand(v)

    @field_validator("network_dim")
    @classmethod
    def _dim(cls, v: IntDimension) -> IntDimension:
        if v.highest > 1024:
            raise ValueError(f"network_dim up to 1024, got {v.highest}")
        return v

    @field_validator("repeats")
    @classmethod
    def _repeats(cls, v: Optional[IntDimension]) -> Optional[IntDimension]:
        from lrfind.data.limits import MAX_REPEATS

        if v is not None and v.highest > MAX_REPEATS:
            raise ValueError(f"repeats up to {MAX_REPEATS:,} (lrfind's limit per folder), got {v.highest:,}")
        return v

    @field_validator("network_alpha_fraction")
    @classmethod
    def _fraction(cls, v: FloatDimension) -> FloatDimension:
        if v.highest > 1:
            raise ValueError(f"the alpha fraction of dim is at most 1 (alpha <= dim), got {v.highest}")
        return v

    @field_validator("network_type")
    @classmethod
    def _network_types(cls, v: NameDimension) -> NameDimension:
        return NameDimension(choices=canonical_names(v.choices, network_type_names(), "network_type"))

    @field_validator("conv_dim_fraction")
    @classmethod
    def _conv_fraction(cls, v: Optional[FloatDimension]) -> Optional[FloatDimension]:
        if v is not None and v.highest > 1:
            raise ValueError(f"conv_dim is at most dim: the fraction is at most 1, got {v.highest}")
        return v

    @field_validator("lokr_factor")
    @classmethod
    def _factor(cls, v: Optional[IntDimension]) -> Optional[IntDimension]:
        return type_arg_in_range("lokr_factor", v)

    @model_validator(mode="after")
    def _network_options_used(self) -> "SearchSpace":
        kinds = self.network_type.choices
        if self.conv_dim_fraction is not None and not set(kinds) & set(conv_type_names()):
            raise ValueError(f"conv_dim_fraction: no network_type of {kinds} has convs; add one of "
                             f"{', '.join(conv_type_names())} or drop conv_dim_fraction")
        for dimension in TYPE_ARG_DIMENSIONS:
            owners = [entry.name for entry in space_arg_types(dimension)]
            if getattr(self, dimension) is not None and not set(kinds) & set(owners):
                raise ValueError(f"{dimension}: network_type does not include {' or '.join(owners)}; "
                                 f"add it or drop {dimension}")
        return self

    @field_validator("optimizer")
    @classmethod
    def _optimizers(cls, v: NameDimension) -> NameDimension:
        return NameDimension(choices=canonical_names(v.choices, study_optimizer_names(), "optimizer"))

    @field_validator("lr_scheduler")
    @classmethod
    def _schedulers(cls, v: NameDimension) -> NameDimension:
        return NameDimension(choices=canonical_names(v.choices, scheduler_names(), "lr_scheduler"))

    def with_budget(self, trial_budget_steps: int | None = None, eval_every_steps: int | None = None):
        """A copy with the CLI's --trial-budget (validated; eval interval capped at the budget)."""
        budget = self.budget.model_dump()
        if trial_budget_steps is not None:
            budget["trial_budget_steps"] = trial_budget_steps
            budget["eval_every_steps"] = min(budget["eval_every_steps"], trial_budget_steps)
        if eval_every_steps is not None:
            budget["eval_every_steps"] = eval_every_steps
        data = self.model_dump(exclude_none=True)
        data["budget"] = budget
        return validate_space(data, "--trial-budget")


def validate_space(data: dict, source: str) -> SearchSpace:
    try:
        return SearchSpace(**data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source) + " (see configs/*.toml for examples)") from None
    except TypeError as err:  # a non-table where a table is needed, e.g. fixed = 3
        raise ConfigError(f"{source}: {err}") from None


def preset_names() -> list[str]:
    folder = resources.files(PRESET_PACKAGE).joinpath(PRESET_FOLDER)
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_path(name: str):
    return resources.files(PRESET_PACKAGE).joinpath(PRESET_FOLDER, f"{name}.toml")


def family_preset(name: str, family: Optional[str]) -> str:
    """The preset `name` means for a model of `family`: "character" on SDXL is "sdxl-character"
    where the family has its own (its resolution, batch and dims differ); else `name` itself."""
    own = f"{family}-{name}"
    return own if family and family != "sd1" and own in preset_names() else name


def load_space(path_or_preset: str | Path, family: Optional[str] = None) -> SearchSpace:
    """Read a search-space TOML file, or a shipped preset by name ("character", "tiny", ...); a
    preset name is read as `family`'s own preset where there is one (family_preset)."""
    path = Path(path_or_preset)
    if not path.is_file() and str(path_or_preset) in preset_names():
        path_or_preset = family_preset(str(path_or_preset), family)
    if path.is_file():
        source, text = str(path), _read_text(path)
    elif str(path_or_preset) in preset_names():
        source, text = f"preset {path_or_preset}", preset_path(str(path_or_preset)).read_text("utf-8")
    else:
        raise ConfigError(
            f"search space {str(path_or_preset)!r} is neither a file nor a preset; give a TOML path "
            f"(e.g. configs/character.toml) or one of: {', '.join(preset_names())}"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err}); fix the file") from None
    return validate_space(data, source)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the search space ({err}); check the file") from None
