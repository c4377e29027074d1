"""network_dim × network_alpha: a contour of the best value per (alpha, dim) cell when both vary,
else the objective against each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from lrfind.jsonfiles import finite
from lrfind.probe.page import plot_text
from lrfind.report.data import StudyData
from lrfind.report.sections.common import TEMPLATE, Fragment, drawn, section
from lrfind.report.sections.objectives import complete_trials, first_value, objective_names
from lrfind.study.trial_params import TrialParams


@dataclass(frozen=True)
class DimAlphaPoint:
    dim: int
    alpha: float
    value: float
    trial: int


@dataclass(frozen=True)
class DimAlphaGrid:
    dims: list[int]
    alphas: list[float]
    values: list[list[Optional[float]]]  # [alpha][dim]: the best value there, None where untried


@dataclass(frozen=True)
class DimAlphaInfo:
    available: bool
    reason: str = ""  # why there is no plot (available False)
    kind: str = ""  # contour, or slices when too few distinct pairs
    objective: str = ""
    points: list[DimAlphaPoint] = field(default_factory=list)
    grid: Optional[DimAlphaGrid] = None


def _alpha_of(trial) -> Optional[float]:
    trained = (trial.user_attrs.get("train_values") or {}).get("network_alpha")
    if finite(trained) is not None:
        return float(trained)
    if "network_dim" not in trial.params or "network_alpha_fraction" not in trial.params:
        return None

    # the study's own rounding rule (TrialParams.network_alpha), not a copy of it
    point = TrialParams(network_dim=int(trial.params["network_dim"]),
                        network_alpha_fraction=float(trial.params["network_alpha_fraction"]),
                        epochs=1, repeats=None, lr_multiplier=1.0, optimizer="AdamW", lr_scheduler="constant")
    return point.network_alpha


def _get_dim_alpha_info(data: StudyData) -> DimAlphaInfo:
    points = [DimAlphaPoint(int(t.params["network_dim"]), alpha, first_value(t), t.number)
              for t in complete_trials(data) if "network_dim" in t.params and (alpha := _alpha_of(t)) is not None]
    if not points:
        return DimAlphaInfo(False, reason="no completed trial with network_dim and alpha yet")
    dims = sorted({p.dim for p in points})
    alphas = sorted({p.alpha for p in points})
    better = min if data.directions[0] == "minimize" else max
    cells: dict[tuple, float] = {}
    for p in points:
        cells[(p.alpha, p.dim)] = better(p.value, cells.get((p.alpha, p.dim), p.value))
    grid = [[cells.get((alpha, dim)) for dim in dims] for alpha in alphas]
    kind = "contour" if len(dims) >= 2 and len(alphas) >= 2 and len(points) >= 4 else "slices"
    return DimAlphaInfo(True, kind=kind, objective=objective_names(data)[0], points=points,
                        grid=DimAlphaGrid(dims=dims, alphas=alphas, values=grid))


def dim_alpha_figure(info: DimAlphaInfo):
    if not info.available:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    points = info.points
    hover = [f"trial {p.trial}: dim {p.dim}, alpha {p.alpha:g}, {p.value:.4g}" for p in points]
    marker = {"color": [p.value for p in points], "colorscale": "Viridis_r", "size": 10,
              "line": {"width": 1, "color": "white"}}
    if info.kind == "contour":
        grid = info.grid
        figure = go.Figure(go.Contour(x=grid.dims, y=grid.alphas, z=grid.values, connectgaps=True,
                                      colorscale="Viridis_r",
                                      colorbar={"title": {"text": plot_text(info.objective)}}))
        figure.add_trace(go.Scatter(x=[p.dim for p in points], y=[p.alpha for p in points], mode="markers",
                                    marker={**marker, "color": "white", "line": {"width": 1, "color": "black"}},
                                    text=hover, hoverinfo="text", name="trials"))
        figure.update_xaxes(title_text="network_dim", type="log")
        figure.update_yaxes(title_text="network_alpha", type="log")
        title = "network_dim × network_alpha (best value per cell)"
    else:
        figure = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=["network_dim", "network_alpha"])
        for col, key in ((1, "dim"), (2, "alpha")):
            figure.add_trace(go.Scatter(x=[getattr(p, key) for p in points], y=[p.value for p in points],
                                        mode="markers", marker=marker, text=hover, hoverinfo="text",
                                        showlegend=False), row=1, col=col)
        figure.update_yaxes(title_text=plot_text(info.objective), row=1, col=1)
        title = "Slices: objective vs network_dim and network_alpha"
    figure.update_layout(title=title, template=TEMPLATE, height=430, showlegend=False)
    return figure


def _caption(info: DimAlphaInfo) -> str:
    if not info.available:
        return info.reason
    if info.kind == "contour":
        return "Circles: trials. Colour: the best objective per (dim, alpha) tried, interpolated between them."
    return "Too few distinct (dim, alpha) pairs for a contour yet: the objective against each."


def dim_alpha_html(info: DimAlphaInfo) -> Fragment:
    return section("dim-alpha", "network_dim × network_alpha", _caption(info),
                   drawn("dim_alpha", dim_alpha_figure(info)))
