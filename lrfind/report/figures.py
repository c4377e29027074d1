"""Plotly figures of the report, each drawn from its section's info (lrfind.report.info*).

Every builder returns a figure or None (nothing to draw). Labels that could carry user text go
through `plot_text`: plotly renders labels as HTML-like markup.
"""

from __future__ import annotations

import html
from typing import Optional

from lrfind.probe.page import _probe_figure  # the probe page's own figure: one drawing of it

TEMPLATE = "plotly_white"
PRUNED_COLOUR = "#888888"


def plot_text(text) -> str:
    return html.escape(str(text), quote=False)


def probe_figure(info: dict):
    if not info.get("available") or not info.get("plot"):
        return None
    figure = _probe_figure(info["plot"])
    figure.update_layout(height=520)
    return figure


def range_test_figure(info: dict):
    test = info.get("range_test") if info.get("available") else None
    if not test:
        return None
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter(x=test["lrs"], y=test["losses"], mode="lines+markers", name="validation loss"))
    losses = [v for v in test["losses"] if v is not None]
    if test["suggested_lr"] and losses:  # a trace, not add_vline: its annotation misplaces on log axes
        figure.add_trace(go.Scatter(x=[test["suggested_lr"]] * 2, y=[min(losses), max(losses)], mode="lines",
                                    name=f"suggested {test['suggested_lr']:.3g}",
                                    line={"dash": "dash", "color": "green"}))
    figure.update_xaxes(type="log", title_text="learning rate (AdamW)")
    figure.update_yaxes(title_text="validation loss")
    figure.update_layout(title=plot_text(f"LR range test: {test['status']}"), template=TEMPLATE, height=380)
    return figure


def history_figure(info: dict):
    if not info["numbers"]:
        return None
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, values in zip(info["objective_names"], info["values"]):
        figure.add_trace(go.Scatter(x=info["numbers"], y=values, mode="markers", name=plot_text(name)))
    if info["best_so_far"]:
        figure.add_trace(go.Scatter(x=info["numbers"], y=info["best_so_far"], mode="lines",
                                    name="best so far", line={"shape": "hv", "color": "red"}))
    figure.update_xaxes(title_text="trial")
    figure.update_yaxes(title_text=f"objective ({info['direction']})")
    figure.update_layout(title="Optimisation history (completed trials)", template=TEMPLATE, height=400)
    return figure


def importance_figure(info: dict):
    if not info["available"]:
        return None
    import plotly.graph_objects as go

    items = sorted(info["importances"].items(), key=lambda kv: kv[1])
    figure = go.Figure(go.Bar(x=[v for _, v in items], y=[plot_text(k) for k, _ in items], orientation="h",
                              text=[f"{v:.2f}" for _, v in items], textposition="outside"))
    figure.update_xaxes(title_text=f"importance ({info['method']}, sums to 1)", range=[0, 1.15])
    figure.update_layout(title=plot_text(f"Parameter importances for {info['objective']}"), template=TEMPLATE,
                         height=120 + 40 * len(items))
    return figure


def parallel_figure(info: dict):
    if not info["available"]:
        return None
    import plotly.graph_objects as go

    dimensions = []
    for dim in info["dimensions"]:
        axis = {"label": plot_text(dim["name"]), "values": dim["values"]}
        if dim["labels"]:
            axis.update(tickvals=list(range(len(dim["labels"]))), ticktext=[plot_text(t) for t in dim["labels"]])
        dimensions.append(axis)
    objective = info["dimensions"][-1]["values"]
    figure = go.Figure(go.Parcoords(dimensions=dimensions, line={
        "color": objective, "colorscale": "Viridis_r", "showscale": True,
        "colorbar": {"title": {"text": plot_text(info["objective"])}, "x": 1.06}}))
    # axis labels sit above the axes: room for them below the title, and for the colour bar
    figure.update_layout(title={"text": "Parallel coordinates (completed trials; colour = objective)", "y": 0.97},
                         template=TEMPLATE, height=470, margin={"l": 90, "r": 110, "t": 110})
    return figure


def dim_alpha_figure(info: dict):
    if not info["available"]:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    points = info["points"]
    hover = [f"trial {p['trial']}: dim {p['dim']}, alpha {p['alpha']:g}, {p['value']:.4g}" for p in points]
    marker = {"color": [p["value"] for p in points], "colorscale": "Viridis_r", "size": 10,
              "line": {"width": 1, "color": "white"}}
    if info["kind"] == "contour":
        grid = info["grid"]
        figure = go.Figure(go.Contour(x=grid["dims"], y=grid["alphas"], z=grid["values"], connectgaps=True,
                                      colorscale="Viridis_r",
                                      colorbar={"title": {"text": plot_text(info["objective"])}}))
        figure.add_trace(go.Scatter(x=[p["dim"] for p in points], y=[p["alpha"] for p in points], mode="markers",
                                    marker={**marker, "color": "white", "line": {"width": 1, "color": "black"}},
                                    text=hover, hoverinfo="text", name="trials"))
        figure.update_xaxes(title_text="network_dim", type="log")
        figure.update_yaxes(title_text="network_alpha", type="log")
        title = "network_dim × network_alpha (best value per cell)"
    else:
        figure = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=["network_dim", "network_alpha"])
        for col, key in ((1, "dim"), (2, "alpha")):
            figure.add_trace(go.Scatter(x=[p[key] for p in points], y=[p["value"] for p in points], mode="markers",
                                        marker=marker, text=hover, hoverinfo="text", showlegend=False), row=1, col=col)
        figure.update_yaxes(title_text=plot_text(info["objective"]), row=1, col=1)
        title = "Slices: objective vs network_dim and network_alpha"
    figure.update_layout(title=title, template=TEMPLATE, height=430, showlegend=False)
    return figure


def intermediate_figure(info: dict):
    if not info["series"]:
        return None
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    figure = go.Figure()
    palette = qualitative.Plotly  # no grey in it: grey stays the pruned trials' colour
    for i, series in enumerate(info["series"]):
        pruned = series["state"] == "PRUNED"
        # one colour per finished trial, or the legend names trials it can't tell apart
        colour = PRUNED_COLOUR if pruned else palette[i % len(palette)]
        figure.add_trace(go.Scatter(
            x=series["steps"], y=series["values"], mode="lines+markers", name=f"trial {series['trial']}",
            legendgroup=series["state"], marker={"size": 7, "color": colour},
            line={"color": colour, "dash": "dot" if pruned else "solid"},
            hovertext=f"trial {series['trial']} ({series['state'].lower()})"))
    figure.update_xaxes(title_text="step")
    figure.update_yaxes(title_text="val_loss / baseline (what the pruner saw)")
    figure.update_layout(title="Intermediate values (dotted grey: pruned)", template=TEMPLATE, height=420)
    return figure


def pareto_figure(info: dict):
    if not info["available"]:
        return None
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_trace(go.Scatter(x=info["x"], y=info["y"], mode="markers", name="trials",
                                text=[f"trial {n}" for n in info["trials"]], marker={"color": "#999999", "size": 8}))
    figure.add_trace(go.Scatter(x=info["front_x"], y=info["front_y"], mode="lines+markers", name="Pareto front",
                                text=[f"trial {n}" for n in info["front_trials"]],
                                marker={"color": "#d62728", "size": 10}, line={"shape": "hv"}))
    figure.update_xaxes(title_text=f"{info['x_name']} (lower is better)")
    figure.update_yaxes(title_text=f"{info['y_name']} (higher is better)")
    figure.update_layout(title="Validation loss vs CLIP: the Pareto front", template=TEMPLATE, height=420)
    return figure


def all_figures(info: dict) -> dict[str, Optional[object]]:
    """Section key -> figure (or None), in page order."""
    return {
        "probe": probe_figure(info["probe"]),
        "range_test": range_test_figure(info["probe"]),
        "history": history_figure(info["history"]),
        "importance": importance_figure(info["importance"]),
        "parallel": parallel_figure(info["parallel"]),
        "dim_alpha": dim_alpha_figure(info["dim_alpha"]),
        "intermediate": intermediate_figure(info["intermediate"]),
        "pareto": pareto_figure(info["pareto"]),
    }

