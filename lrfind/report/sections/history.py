"""Optimisation history: each completed trial's objective(s), and the best so far (one objective)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lrfind.probe.page import plot_text
from lrfind.report.data import StudyData
from lrfind.report.sections.common import TEMPLATE, Fragment, drawn, section
from lrfind.report.sections.objectives import complete_trials, first_value, objective_names


@dataclass(frozen=True)
class HistoryInfo:
    numbers: list[int]  # completed trials
    objective_names: list[str]
    values: list[list[float]]  # per objective, per trial
    best_so_far: Optional[list[float]]  # None in a multi-objective study
    direction: str  # of the first objective


def _get_history_info(data: StudyData) -> HistoryInfo:
    trials = complete_trials(data)
    names = objective_names(data)
    best = None
    if not data.multi_objective and trials:
        better = min if data.directions[0] == "minimize" else max
        best, running = [], None
        for trial in trials:
            running = first_value(trial) if running is None else better(running, first_value(trial))
            best.append(running)
    return HistoryInfo(numbers=[t.number for t in trials], objective_names=names,
                       values=[[float(t.values[i]) for t in trials] for i in range(len(names))],
                       best_so_far=best, direction=data.directions[0])


def history_figure(info: HistoryInfo):
    if not info.numbers:
        return None
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, values in zip(info.objective_names, info.values):
        figure.add_trace(go.Scatter(x=info.numbers, y=values, mode="markers", name=plot_text(name)))
    if info.best_so_far:
        figure.add_trace(go.Scatter(x=info.numbers, y=info.best_so_far, mode="lines",
                                    name="best so far", line={"shape": "hv", "color": "red"}))
    figure.update_xaxes(title_text="trial")
    figure.update_yaxes(title_text=f"objective ({info.direction})")
    figure.update_layout(title="Optimisation history (completed trials)", template=TEMPLATE, height=400)
    return figure


def history_html(info: HistoryInfo) -> Fragment:
    return section("history", "Optimisation history", "Each completed trial's objective; red: the best so far.",
                   drawn("history", history_figure(info)))
