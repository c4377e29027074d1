"""recommendation.json: the full run a study recommends and how sure it is (lrfind.study.recommend
makes it; `lrfind train --from-study`, `lrfind export-kohya` and the report read it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from pydantic import Field, field_validator

from lrfind.artifacts.base import Artifact, Part, read_artifact

Number = Union[int, float]  # int first: steps stay whole numbers in the file


class ConceptRepeat(Part):
    folder: str  # the folder as found, e.g. "10_cat"
    concept: str
    repeats: int  # the recommended repeats
    folder_name: str  # the folder's name for these repeats, e.g. "12_cat"


class Closeness(Part):
    completed: int
    pruned: int
    failed: int
    runner_up: Optional[int] = None  # trial number
    runner_up_gap: Optional[float] = None  # |runner-up value - best value|
    spread: Optional[float] = None  # interquartile range of completed values
    relative_gap: Optional[float] = None  # runner_up_gap / spread
    top: tuple[tuple[int, float], ...] = ()  # (trial number, value) of the top trials, best first


class Agreement(Part):
    values: tuple[Any, ...]  # the top trials' values of one parameter, best first
    agree: bool


class Recommendation(Artifact):
    FIX: ClassVar[str] = "rerun `lrfind study` to rewrite it"

    trial_number: int
    value: float
    direction: str
    params: dict[str, Any]  # the trial's Optuna params
    network_dim: int
    network_alpha: float
    epochs: int
    repeats: Optional[int] = None  # the searched repeats (most-repeated folder); None: folders' own
    concept_repeats: tuple[ConceptRepeat, ...] = ()
    optimizer: str
    optimizer_args: dict[str, Any] = Field(default_factory=dict)
    unet_lr: float
    text_encoder_lr: Optional[float] = None  # None: the text encoder does not train
    lr_scheduler: str
    total_steps: int  # the full run's, not the trial's budget-scaled steps
    steps_math: str
    trial_steps: int
    budget_scale: float
    train_values: dict[str, Any]  # TrainConfig fields of the full run (max_train_epochs set)
    closeness: Closeness
    agreement: dict[str, Agreement] = Field(default_factory=dict)  # searched parameter -> the top trials' values
    confidence: str  # "high" | "medium" | "low"
    metrics: dict[str, Number] = Field(default_factory=dict)  # the best trial's numeric user attributes
    epoch_losses: dict[str, float] = Field(default_factory=dict)  # a swept trial's {"epochs": val loss}
    network_type: str = "lora"
    network_module: str = "networks.lora"
    network_args: dict[str, Any] = Field(default_factory=dict)
    summary: str = ""  # the human paragraph

    @field_validator("epoch_losses", mode="before")
    @classmethod
    def _epochs_as_text(cls, value: Any) -> Any:
        # JSON keys are text: an in-memory {3: loss} reads as the file would
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("train_values")
    @classmethod
    def _full_run(cls, value: dict) -> dict:
        if "max_train_epochs" not in value:
            raise ValueError("has no max_train_epochs of a full run")
        return value

    def repeats_by_folder(self) -> dict[str, int]:
        """{folder as found: recommended repeats}."""
        return {c.folder: c.repeats for c in self.concept_repeats}


def read_recommendation(path: Path, missing_fix: str = "") -> Recommendation:
    return read_artifact(Recommendation, Path(path), missing_fix)
