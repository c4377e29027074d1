"""The recommended trial and the final run per epoch: training vs held-out loss, and drift from the
base model, with where the diagnosis (lrfind.study.diagnosis) says overfitting begins.

A swept trial (lrfind.study.epoch_sweep) measured every epoch count it stands for: its held-out
loss (`epoch_val_losses`), mean training loss (`epoch_train_losses`) and drift (`epoch_drifts`).
A training loss below a rising held-out loss is memorising; a drift that keeps growing while the
held-out loss does not improve changes the base model for nothing. The dashed line is the base
model's held-out loss: a LoRA above it draws held-out images worse than not training at all.

The final run (NAME_final.json) has the same curves when it held images out (`lrfind train
--validation-split`): its held-out loss and drift per saved epoch, its mean training loss per epoch
and the base model's held-out loss before its first step. Without held-out images its validation
loss is on the training images, so it is drawn but not diagnosed (it measures memorising).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from lrfind.jsonfiles import finite
from lrfind.report.data import StudyData
from lrfind.report.sections.common import TEMPLATE, Fragment, drawn, section
from lrfind.study.diagnosis import EpochCurves, diagnose, diagnose_trial
from lrfind.study.epoch_sweep import EPOCH_DRIFTS_ATTR, EPOCH_LOSSES_ATTR, EPOCH_TRAIN_LOSSES_ATTR

OVERFIT_COLOUR = "#d62728"


@dataclass(frozen=True)
class EpochCurvesInfo:
    available: bool
    reason: str = ""  # why there is no plot (available False)
    trial: Optional[int] = None
    epochs: list[int] = field(default_factory=list)
    train_loss: list[Optional[float]] = field(default_factory=list)  # empty when not measured
    held_out_loss: list[Optional[float]] = field(default_factory=list)
    drift: list[Optional[float]] = field(default_factory=list)  # empty when not measured
    base_loss: Optional[float] = None  # the base model's held-out loss
    kept_epoch: Optional[int] = None  # the epoch count the trial kept (its best_epoch)
    verdict: Optional[str] = None  # underfits / fits / overfits / burned
    overfit_from: Optional[int] = None  # the first epoch the diagnosis sees overfitting (or burning)
    diagnosis: Optional[str] = None  # the diagnosis in words
    title: str = ""  # the figure's title: "Trial N per epoch" or "Final run per epoch"
    loss_label: str = "held-out loss"  # the final run without held-out images: its training images' loss


def _recommended_trial(data: StudyData):
    number = (data.recommendation or {}).get("trial_number")
    return next((t for t in data.trials if t.number == number), None) if number is not None else None


def _curve(values: Optional[dict], epochs: list[int]) -> list[Optional[float]]:
    """The values at these epochs; empty when the trial lacks some epoch's (not measured)."""
    values = values or {}
    if not all(str(e) in values for e in epochs):
        return []
    return [finite(values[str(e)]) for e in epochs]


def _base_loss(data: StudyData, attrs: dict) -> Optional[float]:
    base = finite(data.user_attrs.get("baseline_val_loss"))
    if base is not None:
        return base
    loss, ratio = finite(attrs.get("val_loss")), finite(attrs.get("val_loss_ratio"))
    return loss / ratio if loss is not None and ratio else None


def _get_epoch_curves_info(data: StudyData) -> EpochCurvesInfo:
    trial = _recommended_trial(data)
    if trial is None:
        return EpochCurvesInfo(False, reason="no recommendation yet: the curves are the recommended trial's")
    attrs = trial.user_attrs
    losses = attrs.get(EPOCH_LOSSES_ATTR) or {}
    if len(losses) < 2:
        return EpochCurvesInfo(False, trial=trial.number, reason=(
            f"trial {trial.number} trained one epoch count, so it has no per-epoch curve (its schedule changes "
            "with the run's length, or the study ran with --epoch-mode sample)"))
    epochs = sorted(int(e) for e in losses)
    found = diagnose_trial(attrs)
    return EpochCurvesInfo(
        True, trial=trial.number, title=f"Trial {trial.number} per epoch", epochs=epochs, train_loss=_curve(attrs.get(EPOCH_TRAIN_LOSSES_ATTR), epochs),
        held_out_loss=_curve(losses, epochs), drift=_curve(attrs.get(EPOCH_DRIFTS_ATTR), epochs),
        base_loss=_base_loss(data, attrs), kept_epoch=attrs.get("best_epoch"),
        verdict=found.verdict if found else None,
        overfit_from=found.from_epoch if found and found.verdict in ("overfits", "burned") else None,
        diagnosis=found.text if found else attrs.get("diagnosis"))


def _get_final_curves_info(data: StudyData) -> EpochCurvesInfo:
    """The final run's curves from NAME_final.json (read as a dict by report.data)."""
    final = data.final or {}
    rows = sorted((r for r in final.get("epochs", ()) if finite(r.get("val_loss")) is not None),
                  key=lambda r: r["epoch"])
    if len(rows) < 2:
        return EpochCurvesInfo(False, reason="no final run with two or more validated epochs yet"
                               if not final else "the final run has fewer than two validated epochs: no curve")
    epochs = [int(r["epoch"]) for r in rows]

    def column(key: str) -> list[Optional[float]]:
        values = [finite(r.get(key)) for r in rows]
        return values if all(v is not None for v in values) else []

    held_out, drift, base = column("val_loss"), column("drift"), finite(final.get("base_val_loss"))
    found = None
    if drift and base is not None:  # drift and the base loss are measured only with held-out images
        found = diagnose(EpochCurves(epochs=tuple(epochs), held_out_loss=tuple(held_out), base_loss=base,
                                     train_loss=tuple(column("train_loss")), drift=tuple(drift)))
    return EpochCurvesInfo(
        True, epochs=epochs, train_loss=column("train_loss"), held_out_loss=held_out, drift=drift, base_loss=base,
        kept_epoch=final.get("suggested_epoch"), verdict=found.verdict if found else None,
        overfit_from=found.from_epoch if found and found.verdict in ("overfits", "burned") else None,
        diagnosis=found.text if found else None, title="Final run per epoch",
        loss_label="held-out loss" if found else "validation loss (training images)")


def epoch_curves_figure(info: EpochCurvesInfo):
    if not info.available:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = 2 if info.drift else 1
    figure = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    if info.train_loss:
        figure.add_trace(go.Scatter(x=info.epochs, y=info.train_loss, mode="lines+markers", name="training loss"),
                         row=1, col=1)
    figure.add_trace(go.Scatter(x=info.epochs, y=info.held_out_loss, mode="lines+markers", name=info.loss_label),
                     row=1, col=1)
    if info.base_loss is not None:
        figure.add_hline(y=info.base_loss, line={"dash": "dash", "color": "#888888"}, row=1, col=1,
                         annotation_text="base model (held-out)")
    if info.drift:
        figure.add_trace(go.Scatter(x=info.epochs, y=info.drift, mode="lines+markers", name="drift"), row=2, col=1)
        figure.update_yaxes(title_text="drift", row=2, col=1)
    if info.overfit_from is not None:
        figure.add_vline(x=info.overfit_from, line={"dash": "dot", "color": OVERFIT_COLOUR},
                         annotation_text=f"{info.verdict} from epoch {info.overfit_from}")
    figure.update_yaxes(title_text="loss", row=1, col=1)
    figure.update_xaxes(title_text="epochs", row=rows, col=1)
    figure.update_layout(title=info.title, template=TEMPLATE, height=520 if rows == 2 else 380)
    return figure


def _caption(info: EpochCurvesInfo) -> str:
    if not info.available:
        return info.reason + "."
    if info.trial is None:  # the final run
        suggested = f" It suggests epoch {info.kept_epoch}." if info.kept_epoch is not None else ""
        if info.diagnosis is None:
            return (f"The final run: training loss and {info.loss_label} per epoch.{suggested} No diagnosis: "
                    "it held no images out (lrfind train --validation-split measures held-out loss and drift).")
        return (f"The final run: training and held-out loss per epoch (dashed: the base model's held-out loss "
                f"before its first step) and drift from the base model.{suggested} Diagnosis: {info.diagnosis}")
    kept = f" It keeps epoch {info.kept_epoch}." if info.kept_epoch is not None else ""
    return (f"The recommended trial {info.trial}: training and held-out loss per epoch (dashed: the base "
            f"model's held-out loss) and drift from the base model.{kept} "
            f"Diagnosis: {info.diagnosis or 'none'}")


def epoch_curves_html(info: EpochCurvesInfo) -> Fragment:
    return section("epoch-curves", "Training vs held-out loss, and drift, per epoch", _caption(info),
                   drawn("epoch-curves", epoch_curves_figure(info)))


def final_curves_html(info: EpochCurvesInfo) -> Fragment:
    if not info.available:
        return Fragment("")
    return section("final-curves", "The final run per epoch", _caption(info),
                   drawn("final-curves", epoch_curves_figure(info)))
