"""Parallel coordinates: every searched parameter of the completed trials, coloured by objective."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from lrfind.probe.page import plot_text
from lrfind.report.data import StudyData
from lrfind.report.sections.common import TEMPLATE, Fragment, drawn, section
from lrfind.report.sections.objectives import complete_trials, first_value, objective_names
from lrfind.study.epoch_sweep import with_swept_epoch


@dataclass(frozen=True)
class Axis:
    """A parallel-coordinates axis: numbers as they are, names as indices into `labels`."""
    name: str
    values: list[float]
    labels: Optional[list[str]]  # None for a numeric axis


@dataclass(frozen=True)
class ParallelInfo:
    available: bool
    dimensions: list[Axis] = field(default_factory=list)  # the parameters, then the objective
    reason: str = ""  # why there is no plot (available False)
    numbers: list[int] = field(default_factory=list)  # the trials
    objective: str = ""


def _axis(name: str, values: list) -> Axis:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return Axis(name, [float(v) for v in values], None)
    labels = sorted({str(v) for v in values})
    return Axis(name, [float(labels.index(str(v))) for v in values], labels)


def _get_parallel_info(data: StudyData) -> ParallelInfo:
    trials = complete_trials(data)
    if not trials:
        return ParallelInfo(False, reason="no completed trial yet")

    params = [with_swept_epoch(t.params, t.user_attrs) for t in trials]  # swept trials: their best epoch
    names = sorted({name for p in params for name in p})
    # A parameter that not every trial has (e.g. a later space) would misalign the axes: skip it.
    names = [n for n in names if all(n in p for p in params)]
    objective = objective_names(data)[0]
    dimensions = [_axis(n, [p[n] for p in params]) for n in names]
    dimensions.append(Axis(objective, [first_value(t) for t in trials], None))
    return ParallelInfo(True, dimensions=dimensions, numbers=[t.number for t in trials], objective=objective)


def parallel_figure(info: ParallelInfo):
    if not info.available:
        return None
    import plotly.graph_objects as go

    dimensions = []
    for dim in info.dimensions:
        axis = {"label": plot_text(dim.name), "values": dim.values}
        if dim.labels:
            axis.update(tickvals=list(range(len(dim.labels))), ticktext=[plot_text(t) for t in dim.labels])
        dimensions.append(axis)
    objective = info.dimensions[-1].values
    figure = go.Figure(go.Parcoords(dimensions=dimensions, line={
        "color": objective, "colorscale": "Viridis_r", "showscale": True,
        "colorbar": {"title": {"text": plot_text(info.objective)}, "x": 1.06}}))
    # axis labels sit above the axes: room for them below the title, and for the colour bar
    figure.update_layout(title={"text": "Parallel coordinates (completed trials; colour = objective)", "y": 0.97},
                         template=TEMPLATE, height=470, margin={"l": 90, "r": 110, "t": 110})
    return figure


def parallel_html(info: ParallelInfo) -> Fragment:
    return section("parallel", "Parallel coordinates", "" if info.available else info.reason,
                   drawn("parallel", parallel_figure(info)))
