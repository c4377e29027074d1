"""The Pareto front of the objective's terms: held-out loss (ratio to the base model) against each
other term a study measured, one panel per pair: drift (lower is better), CLIP-I, CLIP-T and, with
--dino, DINO (higher is better).

Two fronts are marked. In each panel, a line through the trials no other beats on that pair (the
2-D front of the two axes). In red, in every panel, the trials no other beats on all the terms
shown at once: a --pareto study's own front (its objectives are these terms), and in a
single-objective study the trials a weighting of the terms could rank first. A trial off a
panel's line can be on the red front: what it loses on that pair it wins on another term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from lrfind.jsonfiles import finite
from lrfind.report.data import StudyData
from lrfind.report.sections.common import TEMPLATE, Fragment, drawn, section

# (attribute, axis label, higher is better): the terms plotted against the loss, in this order
PANEL_TERMS = (("drift", "drift from the base model", False), ("clip_i", "CLIP-I", True),
               ("clip_t", "CLIP-T", True), ("dino", "DINO", True))


@dataclass(frozen=True)
class ParetoPanel:
    """The loss against one term: every usable trial, and the 2-D front of the pair (by x)."""

    y_name: str  # drift, clip_i, clip_t or dino
    y_label: str
    y_maximize: bool
    trials: list[int] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    front_trials: list[int] = field(default_factory=list)  # by x
    front_x: list[float] = field(default_factory=list)
    front_y: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ParetoInfo:
    available: bool
    reason: str = ""  # why there is no plot (available False)
    x_name: str = ""  # val_loss_ratio, else val_loss
    panels: list[ParetoPanel] = field(default_factory=list)
    # the trials no other beats on the loss and every panel's term at once (those measured on all), by loss
    front_trials: list[int] = field(default_factory=list)

    @property
    def y_names(self) -> list[str]:
        return [panel.y_name for panel in self.panels]


def pareto_front(points: Sequence[Sequence[float]], maximize: Sequence[bool] = (False, True)) -> list[int]:
    """Indices of the points no other point dominates, sorted by the first coordinate.

    `maximize[k]` says whether coordinate k is maximised (else minimised); the default is a loss
    (minimised) against a score (maximised). Hand-written (a few lines): Optuna's front helpers work
    on a study's objectives only, and in a single-objective study these terms are trial attributes.
    """
    signs = [-1.0 if up else 1.0 for up in maximize]  # as minimised coordinates
    costs = [[s * v for s, v in zip(signs, point)] for point in points]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    front = [i for i, cost in enumerate(costs) if not any(dominates(other, cost) for other in costs)]
    return sorted(front, key=lambda i: points[i][0])


def _value(trial, key: str):
    return finite(trial.user_attrs.get(key))


def _panel(rows: list, x_key: str, term: tuple[str, str, bool]) -> ParetoPanel | None:
    name, label, maximize = term
    usable = [t for t in rows if _value(t, x_key) is not None and _value(t, name) is not None]
    if not usable:
        return None
    points = [(float(_value(t, x_key)), float(_value(t, name))) for t in usable]
    front = pareto_front(points, (False, maximize))
    return ParetoPanel(name, label, maximize, trials=[t.number for t in usable], x=[p[0] for p in points],
                       y=[p[1] for p in points], front_trials=[usable[i].number for i in front],
                       front_x=[points[i][0] for i in front], front_y=[points[i][1] for i in front])


def _get_pareto_info(data: StudyData) -> ParetoInfo:
    rows = [t for t in data.trials if t.state.name == "COMPLETE"]
    x_key = "val_loss_ratio" if any(_value(t, "val_loss_ratio") is not None for t in rows) else "val_loss"
    panels = [panel for panel in (_panel(rows, x_key, term) for term in PANEL_TERMS) if panel is not None]
    if not panels:
        return ParetoInfo(False, reason="needs completed trials with a validation loss and a drift, CLIP or DINO "
                                        "score (a --score loss study without drift has neither)")
    keys = [x_key, *(panel.y_name for panel in panels)]
    complete = [t for t in rows if all(_value(t, key) is not None for key in keys)]
    points = [tuple(float(_value(t, key)) for key in keys) for t in complete]
    front = pareto_front(points, (False, *(panel.y_maximize for panel in panels)))
    return ParetoInfo(True, x_name=x_key, panels=panels, front_trials=[complete[i].number for i in front])


def pareto_figure(info: ParetoInfo):
    """One panel per term, two per row; the red markers are the front of all the terms at once."""
    if not info.available:
        return None
    from plotly.subplots import make_subplots

    columns = min(2, len(info.panels))
    rows = -(-len(info.panels) // columns)
    figure = make_subplots(rows=rows, cols=columns, horizontal_spacing=0.12, vertical_spacing=0.16,
                           subplot_titles=[f"{info.x_name} vs {p.y_label}" for p in info.panels])
    on_front = set(info.front_trials)
    for index, panel in enumerate(info.panels):
        row, column = divmod(index, columns)
        _add_panel(figure, panel, on_front, row + 1, column + 1, first=index == 0)
        better = "higher" if panel.y_maximize else "lower"
        figure.update_xaxes(title_text=f"{info.x_name} (lower is better)", row=row + 1, col=column + 1)
        figure.update_yaxes(title_text=f"{panel.y_name} ({better} is better)", row=row + 1, col=column + 1)
    figure.update_layout(title="Held-out loss against each other term: the Pareto fronts", template=TEMPLATE,
                         height=380 * rows + 60)
    return figure


def _add_panel(figure, panel: ParetoPanel, on_front: set, row: int, column: int, first: bool) -> None:
    import plotly.graph_objects as go

    colours = ["#d62728" if n in on_front else "#999999" for n in panel.trials]
    figure.add_trace(go.Scatter(x=panel.x, y=panel.y, mode="markers", name="trials (red: front of all terms)",
                                text=[f"trial {n}" + (" (front of all terms)" if n in on_front else "")
                                      for n in panel.trials],
                                marker={"color": colours, "size": 9}, showlegend=first, legendgroup="trials"),
                     row=row, col=column)
    figure.add_trace(go.Scatter(x=panel.front_x, y=panel.front_y, mode="lines", name="front of the panel's pair",
                                text=[f"trial {n}" for n in panel.front_trials], line={"color": "#1f77b4",
                                                                                      "shape": "hv", "dash": "dot"},
                                showlegend=first, legendgroup="pair front"),
                     row=row, col=column)


def pareto_html(info: ParetoInfo) -> Fragment:
    caption = ("Red: trials no other trial beats on the loss and every term shown at once; dotted: the front of "
               "each panel's pair. Drift is lower-is-better; CLIP and DINO higher-is-better."
               if info.available else info.reason)
    return section("pareto", "Pareto front: held-out loss vs drift, CLIP and DINO", caption,
                   drawn("pareto", pareto_figure(info)))
