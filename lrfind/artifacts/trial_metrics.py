"""A trial's metrics: trials/<number>/metrics.json and the same values in its Optuna user
attributes (lrfind.study.objective writes both; the report and the recommendation read them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from pydantic import Field, model_serializer

from lrfind.artifacts.base import Artifact, Part, read_artifact

Number = Union[int, float]
# written only when they have a value (a swept trial's epochs, CLIP samples, a twin's source, ...)
WHEN_PRESENT_KEYS = ("best_epoch", "epoch_val_losses", "stopped_early", "clip_calibrated", "samples",
                     "sample_prompts", "sample_seeds", "duplicate_of", "train_values", "drift", "epoch_drifts",
                     "epoch_train_losses", "diagnosis", "objective_terms", "clip_i_reference", "dino")
FILE_ONLY_KEYS = ("schema_version", "number", "params")  # in metrics.json, not in the user attributes


class FullRunSteps(Part):
    """The full run the trial stands for."""

    steps: int
    text: str


# 2: drift, epoch_drifts (lrfind.scoring.drift), epoch_train_losses and diagnosis; files of version 1 read as before, without them
# 3: objective_terms (each weighted term of lrfind.study.scoring, summing to the trial's value) and
# clip_i_reference (which images CLIP-I compared with); files of versions 1 and 2 read as before, without them
# 4: dino (lrfind.scoring.dino, a study with --dino), also a key of objective_terms; files of versions
# 1 to 3 read as before, without it
TRIAL_METRICS_VERSION = 4


class TrialMetrics(Artifact):
    FIX: ClassVar[str] = "rerun the study (lrfind study) to rewrite it"

    schema_version: int = TRIAL_METRICS_VERSION
    VERSION: ClassVar[int] = TRIAL_METRICS_VERSION  # Artifact's version check reads it
    number: int
    params: dict[str, Any] = Field(default_factory=dict)
    val_loss: Optional[float] = None
    val_history: tuple[tuple[int, float], ...] = ()  # (step, validation loss)
    steps_done: int = 0
    steps_planned: int = 0
    clip_i: Optional[float] = None
    clip_t: Optional[float] = None
    full_run: Optional[FullRunSteps] = None
    best_epoch: Optional[int] = None  # a swept trial's kept epoch count (lrfind.study.epoch_sweep)
    epoch_val_losses: Optional[dict[str, float]] = None  # a swept trial's {"epochs": val loss}
    stopped_early: Optional[str] = None
    clip_calibrated: Optional[bool] = None
    samples: Optional[tuple[str, ...]] = None  # sample images, relative to the study folder
    sample_prompts: Optional[tuple[str, ...]] = None
    sample_seeds: Optional[tuple[int, ...]] = None
    val_loss_ratio: Optional[float] = None
    seconds: float = 0.0
    duplicate_of: Optional[int] = None  # a twin's result: the trial it was copied from
    train_values: Optional[dict[str, Any]] = None  # a twin copies its source's
    drift: Optional[float] = None  # the kept epoch's drift from the base model (lrfind.scoring.drift)
    epoch_drifts: Optional[dict[str, float]] = None  # {"epochs": drift} at each epoch boundary measured
    epoch_train_losses: Optional[dict[str, float]] = None  # a swept trial's mean training loss per boundary
    diagnosis: Optional[str] = None  # a swept trial's verdict in words (lrfind.study.diagnosis)
    # {"loss", "drift", "clip_i", "clip_t"}, and "dino" with --dino: weighted and signed, their sum is
    # the objective value
    objective_terms: Optional[dict[str, float]] = None
    # "held-out" or "training": the images CLIP-I (and DINO) compared samples with
    clip_i_reference: Optional[str] = None
    dino: Optional[float] = None  # mean cosine of DINO embeddings, samples vs those images (a study with --dino)

    @model_serializer(mode="wrap")
    def _as_in_file(self, handler) -> dict:
        return {k: v for k, v in handler(self).items() if not (k in WHEN_PRESENT_KEYS and v is None)}

    def user_attributes(self) -> dict:
        """The trial's Optuna user attributes: the file's values without number and params."""
        return {k: v for k, v in self.to_dict().items() if k not in FILE_ONLY_KEYS}

    @classmethod
    def from_user_attributes(cls, number: int, params: dict, attrs: dict) -> "TrialMetrics":
        """A trial's metrics from its user attributes (the other attributes are the study's own)."""
        return cls.from_dict({"number": number, "params": params,
                              **{k: v for k, v in attrs.items() if k in cls.model_fields}}, f"trial {number}")


def read_trial_metrics(path: Path) -> TrialMetrics:
    return read_artifact(TrialMetrics, Path(path))
