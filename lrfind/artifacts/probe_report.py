"""probe.json: what the probe measured and the settings derived from it (lrfind.probe writes it).

On disk the derived settings sit at the top level (unet_lr, adamw_lr, ...), as earlier lrfind
wrote them; in the model they are one `DerivedLrs`, present only when the probe found an lr. The
plateau's keys (status ... steps) are written only when a d*lr curve was analysed, the range test,
dataset and tensorboard keys only when there are such results, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from pydantic import Field, model_serializer, model_validator

from lrfind.artifacts.base import Artifact, Part, read_artifact

Number = Union[int, float]  # int first: steps stay whole numbers in the file
PLATEAU_KEYS = ("status", "plateau_value", "plateau_step", "confidence", "advice", "steps")
DERIVED_KEYS = ("unet_lr", "adamw_lr", "lion_lr", "lion_weight_decay_factor", "text_encoder_lr",
                "text_encoder_lr_range", "prodigy", "rescale_rule")
WHEN_PRESENT_KEYS = ("range_test", "dataset", "tensorboard")


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


class ProbeReport(Artifact):
    FIX: ClassVar[str] = "rerun lrfind probe"
    FLAT_PARTS: ClassVar[tuple[str, ...]] = ("derived",)

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

    @model_validator(mode="before")
    @classmethod
    def _nest_derived(cls, data: Any) -> Any:
        if isinstance(data, dict) and "derived" not in data and any(k in data for k in DERIVED_KEYS):
            data = dict(data)
            data["derived"] = {k: data.pop(k) for k in DERIVED_KEYS if k in data}
        return data

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
