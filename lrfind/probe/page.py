"""The probe's small HTML page (next to probe.json): the d*lr curve, its plateau, and the loss.

Pure data first (`_get_probe_plot_info`, tested), then the figure (plotly, imported lazily):
`probe_figure` is the one drawing of the curve, here and in the report's probe section
(lrfind.report.sections.probe). The page works offline: plotly.js is inlined once. User text
(dataset names, advice) is HTML-escaped both in the page and in the figure, whose labels plotly
renders as HTML-like markup.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from lrfind.atomic import write_text
from lrfind.jsonfiles import finite
from lrfind.probe.plateau import PlateauResult

STATUS_TEXT = {
    "converged": "converged: d*lr flattened",
    "still_rising": "still rising: the value is a lower bound",
    "stuck_at_d0": "stuck at d0: d*lr never rose",
    "diverged": "diverged: NaN/inf in the run",
}


def _get_probe_plot_info(curve: Any, result: PlateauResult, *, title: str = "lrfind probe",
                         held_out: Optional[dict] = None) -> dict:
    """Everything the page draws, as plain JSON-safe data (non-finite numbers become None).

    `curve` is a TBCurve-like object (steps, values, optional loss_steps, losses, tag) or the
    probe.json rows [step, d*lr, loss]; `held_out` is probe.json's held_out (held_out_summary's).
    """
    steps, values, loss_steps, losses, tag = _curve_series(curve)
    plateau = None
    if result.window_steps is not None and result.value is not None:
        plateau = {"start_step": result.window_steps[0], "end_step": result.window_steps[1],
                   "value": result.value}
    # The value line spans the plateau, or the whole run where the value is a bound or a last value.
    line_steps = (plateau["start_step"], plateau["end_step"]) if plateau else (
        (steps[0], steps[-1]) if steps else None)
    value_line = None
    if result.value is not None and line_steps is not None:
        label = {"converged": "plateau", "still_rising": "lower bound",
                 "diverged": "last finite", "stuck_at_d0": "stuck at"}[result.status]
        value_line = {"steps": list(line_steps), "value": result.value,
                      "label": f"{label} {result.value:.3g}"}
    earlier = result.earlier_plateau
    return {
        "title": title,
        "tag": tag,
        "dlr": {"steps": steps, "values": [_on_log_axis(v) for v in values]},
        "loss": ({"steps": loss_steps, "values": [finite(v) for v in losses]}
                 if loss_steps else None),
        "plateau": plateau,
        "earlier_plateau": ({"start_step": earlier[0], "end_step": earlier[1], "value": earlier[2]}
                            if earlier else None),
        "value_line": value_line,
        "status": result.status,
        "status_text": f"{STATUS_TEXT[result.status]} (confidence {result.confidence:.2f})",
        "confidence": result.confidence,
        "advice": result.advice,
        "held_out": held_out_summary(held_out),
    }


def held_out_summary(held_out: Optional[dict]) -> Optional[dict]:
    """probe.json's held_out as the page and the report show it: one line of text, and the
    held-out losses by step (the base model's at step 0). None: the probe had no held_out part."""
    if not held_out:
        return None
    images = len(held_out.get("images") or ())
    baseline, at_end = finite(held_out.get("baseline_loss")), finite(held_out.get("loss_at_end"))
    points = [(0, baseline)] if baseline is not None else []
    points += [(row[0], finite(row[1])) for row in held_out.get("losses") or () if finite(row[1]) is not None]
    if not images:
        text = f"no held-out loss: {held_out.get('reason') or 'no image held out'}"
    else:
        where = (f"from --validation-dir {held_out.get('dir')}" if held_out.get("source") == "dir" else
                 f"split off the dataset (validation split {held_out.get('fraction'):g}, seed {held_out.get('seed')})")
        text = f"held-out loss on {images} image(s) {where}, never trained on by the probe"
        text += f": base model {baseline:.4g}" if baseline is not None else ""
        if at_end is not None:
            change = f" ({(at_end / baseline - 1) * 100:+.3g} %)" if baseline else ""
            text += f", after the d*lr probe's last step {at_end:.4g}{change}"
        text += f"; {held_out['reason']}" if held_out.get("reason") else ""
    return {"text": text, "images": images, "baseline": baseline, "at_end": at_end,
            "steps": [p[0] for p in points], "losses": [p[1] for p in points],
            "warnings": list(held_out.get("warnings") or ())}


def write_probe_page(path: str | os.PathLike, info: dict) -> Path:
    """Write the page atomically; returns its path."""
    figure = probe_figure(info)
    figure_html = figure.to_html(include_plotlyjs=True, full_html=False)
    escape = html.escape
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(info['title'])}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:70em}"
        ".status{font-weight:bold}</style></head><body>\n"
        f"<h1>{escape(info['title'])}</h1>\n"
        f"<p class=\"status\">{escape(info['status_text'])}</p>\n"
        f"<p class=\"advice\">{escape(info['advice'])}</p>\n"
        + (f"<p class=\"held-out\">{escape(info['held_out']['text'])}</p>\n" if info.get("held_out") else "") +
        f"{figure_html}\n</body></html>\n"
    )
    write_text(path, page)
    return Path(path)


def probe_figure(info: dict, *, height: Optional[int] = None):
    """The d*lr curve (log axis), its plateau window and value line, and the loss below it.

    `height` overrides the page's own (650 with the loss, 450 without).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    has_loss = info["loss"] is not None
    figure = make_subplots(
        rows=2 if has_loss else 1, cols=1, shared_xaxes=True,
        row_heights=[0.65, 0.35] if has_loss else None, vertical_spacing=0.08,
        subplot_titles=["d*lr", "loss"] if has_loss else ["d*lr"],
    )
    dlr = info["dlr"]
    figure.add_trace(go.Scatter(x=dlr["steps"], y=dlr["values"], mode="lines+markers",
                                name=plot_text(info["tag"] or "d*lr"), marker={"size": 4}),
                     row=1, col=1)
    for key, colour in (("plateau", "rgba(44,160,44,0.18)"), ("earlier_plateau",
                                                              "rgba(150,150,150,0.18)")):
        window = info[key]
        if window:  # vrect needs x only, so the log y axis does not matter
            figure.add_vrect(x0=window["start_step"], x1=window["end_step"], fillcolor=colour,
                             line_width=0, row=1, col=1)
    line = info["value_line"]
    if line:  # a trace, not a shape: shape y on a log axis is ambiguous
        figure.add_trace(go.Scatter(x=line["steps"], y=[line["value"]] * 2, mode="lines",
                                    name=plot_text(line["label"]),
                                    line={"dash": "dash", "color": "green"}), row=1, col=1)
    if has_loss:
        loss = info["loss"]
        figure.add_trace(go.Scatter(x=loss["steps"], y=loss["values"], mode="lines",
                                    name="loss", line={"color": "grey"}), row=2, col=1)
        held = info.get("held_out")
        if held and held["steps"]:  # the deterministic held-out loss: a few points, the base model's at step 0
            figure.add_trace(go.Scatter(x=held["steps"], y=held["losses"], mode="lines+markers",
                                        name="held-out loss", line={"color": "darkorange"}), row=2, col=1)
        figure.update_yaxes(title_text="loss", row=2, col=1)
    figure.update_yaxes(type="log", title_text="d*lr", row=1, col=1)
    figure.update_xaxes(title_text="step", row=2 if has_loss else 1, col=1)
    figure.update_layout(title=plot_text(f"{info['title']}: {info['status_text']}"),
                         height=height or (650 if has_loss else 450), template="plotly_white")
    return figure


def plot_text(text: Any) -> str:
    """Escape for plotly's HTML-like labels (< > &; quotes need no escaping there)."""
    return html.escape(str(text), quote=False)


def _curve_series(curve: Any) -> tuple[list, list, list, list, str]:
    if hasattr(curve, "steps"):
        return (list(curve.steps), list(curve.values), list(getattr(curve, "loss_steps", ())),
                list(getattr(curve, "losses", ())), getattr(curve, "tag", "d*lr"))
    rows: Sequence[Sequence[float]] = curve
    steps = [row[0] for row in rows]
    values = [row[1] for row in rows]
    with_loss = [(row[0], row[2]) for row in rows if len(row) > 2 and row[2] is not None]
    return steps, values, [s for s, _ in with_loss], [loss for _, loss in with_loss], "d*lr"


def _on_log_axis(value: Any) -> Optional[float]:
    """A d*lr value for the log axis: finite and positive, else None (a gap in the line)."""
    number = finite(value)
    return number if number is not None and number > 0 else None
