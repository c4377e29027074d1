"""The probe page: its plot data first, then one offline HTML file with user text escaped."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from lrfind.probe.page import _get_probe_plot_info, probe_figure, write_probe_page
from lrfind.probe.plateau import analyse_curve
from lrfind.probe.tb_reader import TBCurve

LEVEL = 0.08
PLOTLY_BANNER = "* plotly.js v"  # the first lines of the inlined bundle


def make_curve(n=100, nan_from=None, with_loss=True) -> TBCurve:
    steps = tuple(range(1, n + 1))
    values = [min(1e-6 * math.exp(0.31 * s), LEVEL) for s in steps]
    if nan_from is not None:
        values[nan_from:] = [math.nan] * (n - nan_from)
    losses = tuple(0.2 + 0.1 / s for s in steps) if with_loss else ()
    return TBCurve("lr/d*lr/unet", steps, tuple(values), steps if with_loss else (), losses,
                   ("loss/current", "lr/d*lr/unet"))


def info_for(curve: TBCurve, title="my dataset"):
    result = analyse_curve(curve.steps, curve.values, d0=1e-6)
    return result, _get_probe_plot_info(curve, result, title=title)


def test_info_of_a_converged_curve():
    result, info = info_for(make_curve())
    assert info["status"] == "converged" and "converged" in info["status_text"]
    assert info["dlr"]["steps"] == list(range(1, 101))
    assert info["dlr"]["values"][-1] == pytest.approx(LEVEL)
    assert info["loss"]["values"][0] == pytest.approx(0.3)
    assert info["plateau"] == {"start_step": result.plateau_step, "end_step": 100,
                               "value": result.value}
    assert info["value_line"]["steps"] == [result.plateau_step, 100]
    assert info["value_line"]["label"].startswith("plateau 0.08")
    assert info["advice"] == result.advice and info["tag"] == "lr/d*lr/unet"
    json.dumps(info, allow_nan=False)  # plain, JSON-safe data


def test_info_of_a_diverged_curve_has_no_plateau_and_no_nan():
    _, info = info_for(make_curve(nan_from=90))
    assert info["status"] == "diverged" and info["plateau"] is None
    assert info["dlr"]["values"][90:] == [None] * 10
    assert info["value_line"]["steps"] == [1, 100]
    assert info["value_line"]["label"].startswith("last finite")
    json.dumps(info, allow_nan=False)


def test_info_from_probe_json_rows():
    rows = [[s, min(1e-6 * math.exp(0.31 * s), LEVEL), 0.1] for s in range(1, 61)]
    result = analyse_curve([r[0] for r in rows], [r[1] for r in rows])
    info = _get_probe_plot_info(rows, result)
    assert info["dlr"]["steps"] == list(range(1, 61))
    assert info["loss"]["values"] == [0.1] * 60
    assert info["status"] == "converged"


def test_info_of_a_still_rising_curve_marks_a_lower_bound_and_no_loss():
    _, info = info_for(make_curve(n=30, with_loss=False))
    assert info["status"] == "still_rising" and info["loss"] is None
    assert info["value_line"]["label"].startswith("lower bound")


def test_values_a_log_axis_cannot_show_are_gaps_and_losses_stay():
    curve = make_curve(n=60)
    values = list(curve.values)
    values[3], values[4] = 0.0, -1e-3
    losses = list(curve.losses)
    losses[5] = math.inf
    curve = dataclasses.replace(curve, values=tuple(values), losses=tuple(losses))
    result = analyse_curve(curve.steps, curve.values, d0=1e-6)
    info = _get_probe_plot_info(curve, result)
    assert info["dlr"]["values"][3:5] == [None, None] and info["dlr"]["values"][5] == pytest.approx(values[5])
    assert info["loss"]["values"][5] is None and info["loss"]["values"][0] == pytest.approx(0.3)
    json.dumps(info, allow_nan=False)


def test_the_one_figure_draws_curve_value_line_and_loss_with_labels_escaped():
    _, info = info_for(make_curve(), title="cats <b>")
    figure = probe_figure(info)
    assert [trace.name for trace in figure.data] == ["lr/d*lr/unet", info["value_line"]["label"], "loss"]
    assert figure.layout.yaxis.type == "log" and len(figure.layout.shapes) == 1  # the plateau window
    assert figure.layout.title.text.startswith("cats &lt;b&gt;: converged")
    assert figure.layout.height == 650
    assert probe_figure(info, height=520).layout.height == 520  # the report's size
    _, no_loss = info_for(make_curve(n=30, with_loss=False))
    assert probe_figure(no_loss).layout.height == 450


def test_page_is_one_offline_file_with_one_plotly_bundle(tmp_path):
    _, info = info_for(make_curve())
    path = write_probe_page(tmp_path / "probe.html", info)
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "probe.html"
    assert text.count(PLOTLY_BANNER) == 1
    assert "<script src=" not in text  # inlined, nothing fetched
    assert "<h1>my dataset</h1>" in text and "plateau 0.08" in text  # page text and figure label
    assert [p.name for p in tmp_path.iterdir()] == ["probe.html"]  # no temp file left


def test_page_escapes_user_text(tmp_path):
    evil = "<script>alert('x')</script>"
    _, info = info_for(make_curve(), title=f"dataset {evil}")
    text = write_probe_page(tmp_path / "probe.html", info).read_text(encoding="utf-8")
    assert evil not in text
    assert "&lt;script&gt;" in text
    # Only plotly's own script tags: its config, its bundle and the figure call.
    assert text.count("<script") == 3


def test_rewriting_replaces_the_page(tmp_path):
    target = tmp_path / "probe.html"
    target.write_text("old")
    _, info = info_for(make_curve())
    write_probe_page(target, info)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


HELD_OUT = {"source": "split", "images": ["10_cat/01.jpg", "10_cat/04.jpg"], "fraction": 0.2, "min_images": 4,
            "seed": 42, "dir": None, "warnings": ["concept folder 5_cup has 2 image(s)"], "baseline_loss": 0.5,
            "losses": [[10, 0.45], [20, 0.4]], "loss_at_end": 0.4, "reason": ""}


def test_info_carries_the_held_out_loss_with_the_base_models_at_step_0():
    result = analyse_curve([1, 2, 3], [1e-6, 1e-5, 1e-4])
    held = _get_probe_plot_info([[1, 1e-6, 0.3], [2, 1e-5, 0.3], [3, 1e-4, 0.3]], result, held_out=HELD_OUT)["held_out"]
    assert held["steps"] == [0, 10, 20] and held["losses"] == [0.5, 0.45, 0.4] and held["images"] == 2
    assert held["text"] == ("held-out loss on 2 image(s) split off the dataset (validation split 0.2, seed 42), never "
                            "trained on by the probe: base model 0.5, after the d*lr probe's last step 0.4 (-20 %)")
    assert held["warnings"] == ["concept folder 5_cup has 2 image(s)"]
    figure = probe_figure(_get_probe_plot_info([[1, 1e-6, 0.3], [2, 1e-5, 0.3]], result, held_out=HELD_OUT))
    assert [t.name for t in figure.data][-1] == "held-out loss"


def test_held_out_text_without_images_says_why_and_without_a_part_is_none():
    from lrfind.probe.page import held_out_summary

    none = held_out_summary({"source": "none", "images": [], "reason": "no image held out: too few"})
    assert none["text"] == "no held-out loss: no image held out: too few" and none["steps"] == []
    assert held_out_summary(None) is None
    folder = held_out_summary({**HELD_OUT, "source": "dir", "dir": "/v", "fraction": None, "loss_at_end": None,
                               "reason": "only the range test ran: its points are the held-out losses"})
    assert folder["text"] == ("held-out loss on 2 image(s) from --validation-dir /v, never trained on by the probe: "
                              "base model 0.5; only the range test ran: its points are the held-out losses")
