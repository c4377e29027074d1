"""probe.json: what the probe measured and the settings derived from it (lrfind.probe writes it).

On disk the derived settings sit at the top level (unet_lr, adamw_lr, ...), as earlier lrfind
wrote them; in the model they are one `DerivedLrs`, present only when the probe found an lr. The
plateau's keys (status ... steps) are written only when a d*lr curve was analysed, the range test,
dataset, tensorboard and held_out keys only when there are such results, as before.

Version 2 adds `held_out`: the images the probe held out (the study's own split when a study ran
it), the base model's loss on them and the loss there during and after the d*lr probe. A file
without `schema_version` is version 1 and reads as before, without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import Field, model_serializer, model_validator

from lrfind.artifacts.base import Artifact, Part, read_artifact

Number = Union[int, float]  # int first: steps stay whole numbers in the file
PLATEAU_KEYS = ("status", "plateau_value", "plateau_step", "confidence", "advice", "steps")
DERIVED_KEYS = ("unet_lr", "adamw_lr", "lion_lr", "lion_weight_decay_factor", "text_encoder_lr",
                "text_encoder_lr_range", "prodigy", "rescale_rule")
WHEN_PRESENT_KEYS = ("range_test", "dataset", "tensorboard", "held_out")
# 2: held_out (HeldOutLoss); files of version 1 read as before, without it
PROBE_REPORT_VERSION = 2


class ProbeSource(Part):
    """What the probe read: a dataset and model it trained on, or a kohya TensorBoard log."""

    dataset: Optional[str] = None
    model: Optional[str] = None
    tensorboard: Optional[str] = None
    tag: Optional[str] = None

    @model_serializer(mode="wrap")
    def _given_only(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


class DerivedLrs(Part):
    """The settings of a real run derived from the plateau (lrfind.probe.derive)."""

    unet_lr: float
    adamw_lr: float
    lion_lr: float
    lion_weight_decay_factor: float
    text_encoder_lr: float
    text_encoder_lr_range: tuple[float, float]
    prodigy: dict[str, Any]
    rescale_rule: str = ""


class RangeTestResult(Part):
    status: str  # "ok" | "no_descent" | "too_short"
    suggested_lr: Optional[float] = None
    min_loss_lr: Optional[float] = None
    diverged_at_lr: Optional[float] = None
    advice: str = ""
    points: tuple[tuple[Number, float, float], ...] = ()  # (step, lr, validation loss)


class DatasetSummary(Part):
    name: str
    concepts: tuple[str, ...]
    images_repeats: tuple[tuple[int, int], ...]  # (images, repeats) per concept
    images: int
    steps_per_epoch: int


class HeldOutLoss(Part):
    """The probe's held-out images and its deterministic validation loss on them.

    The first keys are the record of the choice (lrfind.data.held_out_images.choose_held_out):
    source "split" (fraction, min_images, seed) or "dir" (dir), or "none" when no image could be
    held out (then every loss is None and `reason` says why). Losses are on the held-out images
    only: `baseline_loss` the base model's, `losses` the d*lr probe's at its evaluation steps,
    `loss_at_end` after its last step (None when it stopped early or only a range test ran). With
    images held out the range test's points (range_test.points) are held-out losses too.
    """

    source: Literal["split", "dir", "none"]
    images: tuple[str, ...] = ()  # relative to the dataset (split) or to dir
    fraction: Optional[float] = None
    min_images: Optional[int] = None
    seed: Optional[int] = None
    dir: Optional[str] = None
    warnings: tuple[str, ...] = ()
    baseline_loss: Optional[float] = None
    losses: tuple[tuple[int, float], ...] = ()  # (step, held-out loss) of the d*lr probe
    loss_at_end: Optional[float] = None
    reason: str = ""  # why there is no held-out loss

    @property
    def split_record(self) -> dict:
        """The record of the choice, as a study keeps it (to compare a study's split with the probe's)."""
        keys = ("source", "images", "dir") if self.source == "dir" else ("source", "images", "fraction",
                                                                         "min_images", "seed")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_dump().items() if k in keys}


class ProbeReport(Artifact):
    FIX: ClassVar[str] = "rerun lrfind probe"
    FLAT_PARTS: ClassVar[tuple[str, ...]] = ("derived",)

    schema_version: int = PROBE_REPORT_VERSION
    VERSION: ClassVar[int] = PROBE_REPORT_VERSION  # Artifact's version check reads it

    source: ProbeSource = Field(default_factory=ProbeSource)
    optimizer: str = "dadaptation"
    method: str = "dadaptation"
    network_dim: Optional[int] = None
    network_alpha: Optional[float] = None
    network_module: str = "networks.lora"
    network_args: dict[str, Any] = Field(default_factory=dict)
    resolution: Optional[int] = None
    batch_size: Optional[int] = None
    seed: Optional[int] = None
    # the d*lr plateau (lrfind.probe.plateau); status None: no curve was analysed
    status: Optional[str] = None
    plateau_value: Optional[float] = None
    plateau_step: Optional[Number] = None
    confidence: Optional[float] = None
    advice: Optional[str] = None
    steps: Optional[int] = None
    derived: Optional[DerivedLrs] = None  # flat in the file
    range_test: Optional[RangeTestResult] = None
    dataset: Optional[DatasetSummary] = None
    curve: tuple[tuple[Number, Optional[float], Optional[float]], ...] = ()  # (step, d*lr, loss)
    tensorboard: Optional[str] = None
    held_out: Optional[HeldOutLoss] = None  # None: a kohya log, or a file from before held-out images

    @model_validator(mode="before")
    @classmethod
    def _nest_derived(cls, data: Any) -> Any:
        if isinstance(data, dict) and "derived" not in data and any(k in data for k in DERIVED_KEYS):
            data = dict(data)
            data["derived"] = {k: data.pop(k) for k in DERIVED_KEYS if k in data}
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "") -> "ProbeReport":
        # a file without schema_version predates versions: version 1 (a new report defaults to the latest)
        if isinstance(data, dict) and "schema_version" not in data:
            data = {"schema_version": 1, **data}
        return super().from_dict(data, source)

    @model_serializer(mode="wrap")
    def _as_in_file(self, handler) -> dict:
        data = handler(self)
        out = {}
        for key, value in data.items():
            if key == "derived":
                out.update(value or {})
            elif key in PLATEAU_KEYS and self.status is None:
                continue
            elif key in WHEN_PRESENT_KEYS and value is None:
                continue
            else:
                out[key] = value
        return out

    @property
    def unet_lr(self) -> Optional[float]:
        """The probe's lr; None when it found none (its status and advice say why)."""
        return self.derived.unet_lr if self.derived is not None else None

    def without_curves(self) -> "ProbeReport":
        """The report without its curve and range test: what a study keeps in its attributes."""
        return self.model_copy(update={"curve": (), "range_test": None})

    def study_attribute(self) -> dict:
        """The study's `probe` user attribute (every worker reads it): no curve, no range test."""
        return {k: v for k, v in self.without_curves().to_dict().items() if k != "curve"}


def read_probe_report(path: Path) -> ProbeReport:
    return read_artifact(ProbeReport, Path(path))


def probe_source(study_dir: Path) -> ProbeSource:
    """What the study folder's probe read (its dataset and model); empty without a probe.json."""
    path = Path(study_dir) / "probe.json"
    return read_probe_report(path).source if path.is_file() else ProbeSource()
