"""The Pareto front of validation loss (ratio to the base model) and CLIP-I (else CLIP-T)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lrfind.jsonfiles import finite
from lrfind.report.data import StudyData
from lrfind.report.sections.common import TEMPLATE, Fragment, drawn, section


@dataclass(frozen=True)
class ParetoInfo:
    available: bool
    reason: str = ""  # why there is no plot (available False)
    x_name: str = ""  # val_loss_ratio, else val_loss
    y_name: str = ""  # clip_i, else clip_t
    trials: list[int] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    front_trials: list[int] = field(default_factory=list)  # by x
    front_x: list[float] = field(default_factory=list)
    front_y: list[float] = field(default_factory=list)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when x is minimised and y maximised.

    Hand-written (a few lines): Optuna's front helpers work on a study's objectives only, and in a
    single-objective study val loss and CLIP are trial attributes, not objectives.
    """
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox <= x and oy >= y and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _get_pareto_info(data: StudyData) -> ParetoInfo:
    rows = [t for t in data.trials if t.state.name == "COMPLETE"]
    has_ratio = any(finite(t.user_attrs.get("val_loss_ratio")) is not None for t in rows)
    x_key = "val_loss_ratio" if has_ratio else "val_loss"
    y_key = "clip_i" if any(finite(t.user_attrs.get("clip_i")) is not None for t in rows) else "clip_t"
    usable = [t for t in rows if finite(t.user_attrs.get(x_key)) is not None
              and finite(t.user_attrs.get(y_key)) is not None]
    if not usable:
        return ParetoInfo(False, reason="needs completed trials with both a validation loss and a CLIP score "
                                        "(a --score loss study has no CLIP scores)")
    points = [(float(t.user_attrs[x_key]), float(t.user_attrs[y_key])) for t in usable]
    front = pareto_front(points)
    return ParetoInfo(True, x_name=x_key, y_name=y_key, trials=[t.number for t in usable],
                      x=[p[0] for p in points], y=[p[1] for p in points],
                      front_trials=[usable[i].number for i in front],
                      front_x=[points[i][0] for i in front], front_y=[points[i][1] for i in front])


def pareto_figure(info: ParetoInfo):
    if not info.available:
        return None
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_trace(go.Scatter(x=info.x, y=info.y, mode="markers", name="trials",
                                text=[f"trial {n}" for n in info.trials], marker={"color": "#999999", "size": 8}))
    figure.add_trace(go.Scatter(x=info.front_x, y=info.front_y, mode="lines+markers", name="Pareto front",
                                text=[f"trial {n}" for n in info.front_trials],
                                marker={"color": "#d62728", "size": 10}, line={"shape": "hv"}))
    figure.update_xaxes(title_text=f"{info.x_name} (lower is better)")
    figure.update_yaxes(title_text=f"{info.y_name} (higher is better)")
    figure.update_layout(title="Validation loss vs CLIP: the Pareto front", template=TEMPLATE, height=420)
    return figure


def pareto_html(info: ParetoInfo) -> Fragment:
    return section("pareto", "Pareto front: validation loss vs CLIP",
                   "Red: trials no other trial beats on both." if info.available else info.reason,
                   drawn("pareto", pareto_figure(info)))
