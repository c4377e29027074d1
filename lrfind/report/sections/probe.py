"""The probe section: probe.json's values, its held-out loss (lrfind.probe.page.held_out_summary,
as on the probe page), its d*lr curve (drawn by the probe page's own
lrfind.probe.page.probe_figure) with the plateau re-analysed, and the LR range test if it ran."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from lrfind.jsonfiles import finite
from lrfind.probe.held_out import PROBE_SPLIT_NOTE_ATTR
from lrfind.probe.page import _get_probe_plot_info, held_out_summary, plot_text, probe_figure
from lrfind.probe.plateau import PlateauResult, analyse_curve
from lrfind.report.data import StudyData
from lrfind.report.sections.common import TEMPLATE, Fragment, drawn, esc, kv_table, number_text, section

PROBE_ROWS = ("status", "confidence", "plateau_value", "plateau_step", "unet_lr", "adamw_lr", "lion_lr",
              "text_encoder_lr", "optimizer", "network_module", "network_dim", "network_alpha", "steps")
PROBE_FIGURE_HEIGHT = 520


@dataclass(frozen=True)
class RangeTestInfo:
    lrs: list[Optional[float]]
    losses: list[Optional[float]]
    suggested_lr: Optional[float]
    status: Optional[str]
    advice: str


@dataclass(frozen=True)
class ProbeInfo:
    available: bool
    reason: str = ""  # why there is no probe (available False)
    rows: tuple[tuple[str, str], ...] = ()
    advice: str = ""
    status: Optional[str] = None
    plot: Optional[dict] = None  # lrfind.probe.page._get_probe_plot_info of the curve: the probe page's data
    range_test: Optional[RangeTestInfo] = None
    # held_out_summary of probe.json's held_out: its text, and the held-out losses by step (None: none measured)
    held_out: Optional[dict] = None
    split_note: str = ""  # the study used a probe that held out other images than it does (lrfind.study.study_probe)


def _plateau_for(probe: dict) -> PlateauResult:
    """The plateau of probe.json's curve, re-analysed (same pure function and defaults as the probe)
    for its window; the stored status, value and advice win where the analysis differs."""
    curve = [row for row in probe.get("curve", []) if row and row[0] is not None]
    steps = [row[0] for row in curve]
    values = [row[1] if row[1] is not None else float("nan") for row in curve]
    result = analyse_curve(steps, values)
    stored = {k: probe[k] for k in ("status", "confidence", "advice") if probe.get(k) is not None}
    if probe.get("status") and probe["status"] != result.status:
        result = dataclasses.replace(result, window=None, window_steps=None, earlier_plateau=None)
    if "plateau_value" in probe:
        stored["value"] = finite(probe["plateau_value"])
    return dataclasses.replace(result, **stored)


def _range_test_info(range_test: Optional[dict]) -> Optional[RangeTestInfo]:
    if not range_test or not range_test.get("points"):
        return None
    points = [p for p in range_test["points"] if len(p) >= 3]
    return RangeTestInfo(lrs=[finite(p[1]) for p in points], losses=[finite(p[2]) for p in points],
                         suggested_lr=finite(range_test.get("suggested_lr")), status=range_test.get("status"),
                         advice=range_test.get("advice", ""))


def _get_probe_info(data: StudyData) -> ProbeInfo:
    probe = data.probe
    if not probe:
        return ProbeInfo(available=False, reason="no probe.json in the study folder and no probe in the study")
    held_out = held_out_summary(probe.get("held_out"))
    return ProbeInfo(
        available=True, rows=tuple((k, number_text(probe[k])) for k in PROBE_ROWS if probe.get(k) is not None),
        advice=probe.get("advice", ""), status=probe.get("status"),
        plot=(_get_probe_plot_info(probe["curve"], _plateau_for(probe), title="d*lr probe",
                                   held_out=probe.get("held_out")) if probe.get("curve") else None),
        range_test=_range_test_info(probe.get("range_test")), held_out=held_out,
        split_note=data.user_attrs.get(PROBE_SPLIT_NOTE_ATTR, ""))


def range_test_figure(test: RangeTestInfo):
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter(x=test.lrs, y=test.losses, mode="lines+markers", name="validation loss"))
    losses = [v for v in test.losses if v is not None]
    if test.suggested_lr and losses:  # a trace, not add_vline: its annotation misplaces on log axes
        figure.add_trace(go.Scatter(x=[test.suggested_lr] * 2, y=[min(losses), max(losses)], mode="lines",
                                    name=f"suggested {test.suggested_lr:.3g}",
                                    line={"dash": "dash", "color": "green"}))
    figure.update_xaxes(type="log", title_text="learning rate (AdamW)")
    figure.update_yaxes(title_text="validation loss")
    figure.update_layout(title=plot_text(f"LR range test: {test.status}"), template=TEMPLATE, height=380)
    return figure


def probe_html(info: ProbeInfo) -> Fragment:
    if not info.available:
        return section("probe", "Probe (d*lr)", info.reason)
    parts = [kv_table(info.rows) + f"<p>{esc(info.advice)}</p>"]
    if info.held_out:
        parts.append(f"<p class=\"held-out\">{esc(info.held_out['text'])}</p>")
    if info.split_note:
        parts.append(f"<p class=\"note\">{esc(info.split_note)}</p>")
    if info.plot:
        parts.append(drawn("probe", probe_figure(info.plot, height=PROBE_FIGURE_HEIGHT)))
    if info.range_test:
        parts += [drawn("range_test", range_test_figure(info.range_test)),
                  f"<p class=\"note\">Range test: {esc(info.range_test.advice)}</p>"]
    return section("probe", "Probe (d*lr)", "", *parts)
