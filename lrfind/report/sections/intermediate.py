"""Intermediate values (what the pruner saw) and what pruning saved: planned minus done steps of
the pruned trials."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lrfind.jsonfiles import finite
from lrfind.report.data import StudyData
from lrfind.report.sections.common import TEMPLATE, Fragment, drawn, section

PRUNED_COLOUR = "#888888"


@dataclass(frozen=True)
class TrialSeries:
    trial: int
    state: str  # COMPLETE or PRUNED
    steps: list[int]
    values: list[Optional[float]]


@dataclass(frozen=True)
class PrunedTotals:
    trials: int = 0
    steps_done: int = 0
    steps_planned: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class IntermediateInfo:
    series: list[TrialSeries]
    pruned: PrunedTotals
    steps_saved: int
    steps_done_total: int  # of the complete and pruned trials
    steps_planned_total: int
    saved_fraction: float  # steps_saved / steps_planned_total


def _steps(trial, key: str) -> Optional[int]:
    value = trial.user_attrs.get(key)
    if finite(value) is not None:
        return int(value)
    if key == "steps_done" and trial.intermediate_values:
        return int(max(trial.intermediate_values))
    if key == "steps_planned":
        planned = (trial.user_attrs.get("train_values") or {}).get("max_train_steps")
        return int(planned) if finite(planned) is not None else None
    return None


def _get_intermediate_info(data: StudyData) -> IntermediateInfo:
    series, done_total, planned_total = [], 0, 0
    pruned = PrunedTotals()
    for trial in data.trials:
        if trial.state.name not in ("COMPLETE", "PRUNED"):
            continue
        if trial.intermediate_values:
            steps = sorted(trial.intermediate_values)
            series.append(TrialSeries(trial.number, trial.state.name, steps,
                                      [finite(trial.intermediate_values[s]) for s in steps]))
        done, planned = _steps(trial, "steps_done"), _steps(trial, "steps_planned")
        if done is None or planned is None:
            continue
        done_total, planned_total = done_total + done, planned_total + planned
        if trial.state.name == "PRUNED":
            pruned = PrunedTotals(trials=pruned.trials + 1, steps_done=pruned.steps_done + done,
                                  steps_planned=pruned.steps_planned + planned,
                                  seconds=pruned.seconds + (finite(trial.user_attrs.get("seconds")) or 0.0))
    saved = pruned.steps_planned - pruned.steps_done
    return IntermediateInfo(series=series, pruned=pruned, steps_saved=saved, steps_done_total=done_total,
                            steps_planned_total=planned_total,
                            saved_fraction=saved / planned_total if planned_total else 0.0)


def intermediate_figure(info: IntermediateInfo):
    if not info.series:
        return None
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    figure = go.Figure()
    palette = qualitative.Plotly  # no grey in it: grey stays the pruned trials' colour
    for i, series in enumerate(info.series):
        pruned = series.state == "PRUNED"
        # one colour per finished trial, or the legend names trials it can't tell apart
        colour = PRUNED_COLOUR if pruned else palette[i % len(palette)]
        figure.add_trace(go.Scatter(
            x=series.steps, y=series.values, mode="lines+markers", name=f"trial {series.trial}",
            legendgroup=series.state, marker={"size": 7, "color": colour},
            line={"color": colour, "dash": "dot" if pruned else "solid"},
            hovertext=f"trial {series.trial} ({series.state.lower()})"))
    figure.update_xaxes(title_text="step")
    figure.update_yaxes(title_text="val_loss / baseline (what the pruner saw)")
    figure.update_layout(title="Intermediate values (dotted grey: pruned)", template=TEMPLATE, height=420)
    return figure


def _caption(info: IntermediateInfo) -> str:
    pruned = info.pruned
    if not pruned.trials:
        return "No trial was pruned (yet)."
    share = f"{100 * info.saved_fraction:.0f} %"
    return (f"Pruning stopped {pruned.trials} trial(s) after {pruned.steps_done} of their "
            f"{pruned.steps_planned} planned steps: {info.steps_saved} steps saved, {share} of the "
            f"{info.steps_planned_total} steps all finished trials planned"
            + (f" (pruned trials ran {pruned.seconds:.0f} s)." if pruned.seconds else "."))


def intermediate_html(info: IntermediateInfo) -> Fragment:
    return section("intermediate", "Intermediate values and pruning", _caption(info),
                   drawn("intermediate", intermediate_figure(info)))
