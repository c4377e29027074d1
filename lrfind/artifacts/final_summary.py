"""NAME_final.json beside a final run's LoRA files: its epochs, the suggested epoch and the X/Y grid
(lrfind.final.after_run writes it; `lrfind train` prints it, the report shows it)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Optional

from pydantic import Field

from lrfind.artifacts.base import Artifact, Part, read_artifact


class EpochRow(Part):
    """One saved epoch of the run."""

    epoch: int
    step: Optional[int] = None
    val_loss: Optional[float] = None
    clip_i: Optional[float] = None
    drift: Optional[float] = None  # from the base model (lrfind.scoring.drift), with held-out images only
    train_loss: Optional[float] = None  # the epoch's mean training loss (written since the report's final-run curves)
    file: str  # the epoch's LoRA file name
    samples: tuple[str, ...] = ()


class FinalSummary(Artifact):
    FIX: ClassVar[str] = "rerun `lrfind train` to rewrite it"

    output_name: str
    epochs: tuple[EpochRow, ...]
    suggested_epoch: int
    suggested_file: str
    reason: str
    xy_grid: Optional[str] = None  # the grid's file name
    xy_weights: tuple[float, ...] = ()
    prompts: tuple[tuple[str, Optional[int]], ...] = Field(default_factory=tuple)  # (prompt, seed)
    clip_calibrated: Optional[bool] = None  # None: no CLIP
    # the base model's loss on the held-out images (measured before the first step, with held-out
    # images only): what the report's final-run diagnosis judges the curve against
    base_val_loss: Optional[float] = None


def read_final_summary(path: Path) -> FinalSummary:
    return read_artifact(FinalSummary, Path(path))
