"""The report's sections as plain data: one pure `_get_*_info(data)` per section (Optuna's style).

Each returns JSON-like dicts (or a pandas DataFrame for the table) built from a `StudyData`; the
figures and the page are drawn from these in lrfind.report.html, and the tests check these, not
the HTML. Plot sections live in lrfind.report.info_plots, image sections in info_images.
"""

from __future__ import annotations

import dataclasses
import platform
import shlex
from typing import Any, Optional

from lrfind.artifacts.probe_report import ProbeReport
from lrfind.errors import LrfindError
from lrfind.jsonfiles import finite
from lrfind.network.kinds import network_label
from lrfind.probe.page import _get_probe_plot_info
from lrfind.probe.plateau import analyse_curve
from lrfind.report.data import StudyData
from lrfind.report.info_images import _get_sample_grid_info, _get_xy_grid_info, unreadable_image_warnings
from lrfind.report.info_plots import (_get_dim_alpha_info, _get_history_info, _get_importance_info,
                                      _get_intermediate_info, _get_parallel_info, _get_pareto_info,
                                      objective_names)
from lrfind.study.recommend import TrialRecord, recommend
from lrfind.study.space import SearchSpace
from lrfind.study.stats import DatasetStats
from lrfind.training.run_options import RUN_WIDE, RunOptions

MAX_FAILED_LISTED = 20
# Big or nested trial attributes that make the trials table unreadable (metrics.json keeps them).
# Dropped from the trials table: big, or the same in every row and shown elsewhere (the prompts
# head the samples section, CLIP calibration is in the warnings and the environment).
TABLE_DROPPED_ATTRS = ("val_history", "train_values", "samples", "lrfind_worker", "sample_prompts", "sample_seeds",
                       "clip_calibrated")
KOHYA_FOLDER = "kohya"  # where the card's export-kohya command writes the two TOMLs


def gather_info(data: StudyData) -> dict[str, Any]:
    """Every section's info, in page order."""
    samples, xy_grid = _get_sample_grid_info(data), _get_xy_grid_info(data)
    return {
        "title": f"lrfind report: {data.name}",
        "status": _get_status_info(data),
        "warnings": _get_warnings_info(data) + unreadable_image_warnings(samples, xy_grid),
        "recommendation": _get_recommendation_info(data),
        "probe": _get_probe_info(data),
        "history": _get_history_info(data),
        "importance": _get_importance_info(data),
        "parallel": _get_parallel_info(data),
        "dim_alpha": _get_dim_alpha_info(data),
        "intermediate": _get_intermediate_info(data),
        "pareto": _get_pareto_info(data),
        "samples": samples,
        "xy_grid": xy_grid,
        "trials": _get_trials_table_info(data),
        "environment": _get_environment_info(data),
    }


def _get_status_info(data: StudyData) -> dict:
    states = data.states
    parts = [f"{n} {state.lower()}" for state, n in sorted(states.items())]
    return {"name": data.name, "running": data.running, "partial": data.partial,
            "has_recommendation": data.recommendation is not None, "states": states,
            "text": f"{len(data.trials)} trials: " + (", ".join(parts) or "none yet"),
            "generated_at": data.generated_at, "storage": data.storage_url}


# --- recommendation card -------------------------------------------------------------------------


def _provisional_recommendation(data: StudyData) -> Optional[dict]:
    """recommend() on the trials so far, for a study with no recommendation.json yet."""
    attrs = data.user_attrs
    if data.multi_objective or not all(attrs.get(k) for k in ("space", "dataset_stats")) or not data.probe:
        return None
    try:
        records = [TrialRecord.from_frozen_trial(t) for t in data.trials]
        space = SearchSpace(**attrs["space"])
        probe, stats = ProbeReport.from_dict(data.probe), DatasetStats.from_dict(attrs["dataset_stats"])
        return recommend(records, space, probe, stats, data.directions[0]).to_dict()
    except (LrfindError, ValueError, TypeError, KeyError):
        return None  # nothing completed yet, or attributes of another version: the card says so


def _number_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def _settings_rows(rec: dict) -> list[list[str]]:
    values = rec.get("train_values", {})
    module, args = values.get("network_module") or "networks.lora", values.get("network_args") or {}
    network = " ".join([network_label(module, args) + ":", module, *(f"{k}={v}" for k, v in args.items())])
    rows = [["network", network], ["network_dim", rec.get("network_dim")], ["network_alpha", rec.get("network_alpha")],
            ["epochs", rec.get("epochs")], ["optimizer", rec.get("optimizer")],
            ["unet_lr", rec.get("unet_lr")],
            ["text_encoder_lr", rec.get("text_encoder_lr") if rec.get("text_encoder_lr") is not None
             else "not trained (unet only)"],
            ["lr_scheduler", rec.get("lr_scheduler")],
            ["optimizer_args", ", ".join(f"{k}={v}" for k, v in rec.get("optimizer_args", {}).items()) or None],
            ["resolution", values.get("resolution")], ["train_batch_size", values.get("train_batch_size")],
            ["total steps", rec.get("total_steps")]]
    rows += _run_option_rows(values)
    for concept in rec.get("concept_repeats", []):
        rows.append([f"repeats of {concept.get('folder')}",
                     f"{concept.get('repeats')} (folder name {concept.get('folder_name')})"])
    return [[name, _number_text(value)] for name, value in rows if value is not None]


def _run_option_rows(values: dict) -> list[list]:
    """The study's run-wide options (lrfind study --clip-skip 2 ...) that are not train's defaults."""
    defaults = RunOptions().model_dump(mode="json")
    shown = ("resolution", "train_batch_size")  # always in the table above
    return [[name, values[name]] for name in RUN_WIDE
            if name not in shown and name in values and values[name] != defaults[name]]


def _commands(data: StudyData) -> dict[str, str]:
    source = (data.probe or {}).get("source", {})
    dataset = str(source.get("dataset") or "DATASET")
    kohya_dir = (data.study_dir / KOHYA_FOLDER).resolve()
    return {
        "train": f"lrfind train {shlex.quote(dataset)} --from-study {shlex.quote(data.name)}",
        "export": f"lrfind export-kohya {shlex.quote(data.name)} --out {shlex.quote(str(kohya_dir))}",
        # kohya's train_network.py runs from its own folder: absolute paths keep the line exact
        "accelerate": ("accelerate launch --num_cpu_threads_per_process 1 train_network.py "
                       f"--config_file {shlex.quote(str(kohya_dir / 'kohya_config.toml'))} "
                       f"--dataset_config {shlex.quote(str(kohya_dir / 'kohya_dataset.toml'))}"),
    }


def _get_recommendation_info(data: StudyData) -> dict:
    rec, provisional = data.recommendation, False
    if rec is None:
        rec, provisional = _provisional_recommendation(data), True
    if rec is None:
        return {"available": False, "commands": _commands(data),
                "reason": "no recommendation yet: no completed trial (or the study has not written "
                          "recommendation.json); let `lrfind study` run more trials"}
    closeness = rec.get("closeness", {})
    return {
        "available": True, "provisional": provisional, "trial_number": rec.get("trial_number"),
        "value": finite(rec.get("value")), "confidence": rec.get("confidence"),
        "settings": _settings_rows(rec), "steps_math": rec.get("steps_math", ""),
        "summary": rec.get("summary", ""),
        "top": [{"trial": t[0], "value": finite(t[1])} for t in closeness.get("top", [])],
        "relative_gap": finite(closeness.get("relative_gap")),
        "agreement": [{"name": name, "values": list(a.get("values", [])), "agree": bool(a.get("agree"))}
                      for name, a in rec.get("agreement", {}).items()],
        "commands": _commands(data),
    }


# --- probe ---------------------------------------------------------------------------------------

PROBE_ROWS = ("status", "confidence", "plateau_value", "plateau_step", "unet_lr", "adamw_lr", "lion_lr",
              "text_encoder_lr", "optimizer", "network_module", "network_dim", "network_alpha", "steps")


def _plateau_for(probe: dict):
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


def _get_probe_info(data: StudyData) -> dict:
    probe = data.probe
    if not probe:
        return {"available": False, "reason": "no probe.json in the study folder and no probe in the study"}
    rows = [[k, _number_text(probe[k])] for k in PROBE_ROWS if probe.get(k) is not None]
    info: dict[str, Any] = {"available": True, "rows": rows, "advice": probe.get("advice", ""),
                            "status": probe.get("status"), "plot": None, "range_test": None}
    if probe.get("curve"):
        info["plot"] = _get_probe_plot_info(probe["curve"], _plateau_for(probe), title="d*lr probe")
    range_test = probe.get("range_test")
    if range_test and range_test.get("points"):
        points = [p for p in range_test["points"] if len(p) >= 3]
        info["range_test"] = {
            "lrs": [finite(p[1]) for p in points], "losses": [finite(p[2]) for p in points],
            "suggested_lr": finite(range_test.get("suggested_lr")), "status": range_test.get("status"),
            "advice": range_test.get("advice", ""),
        }
    return info


# --- warnings, trials table, environment ---------------------------------------------------------


def _get_warnings_info(data: StudyData) -> list[dict]:
    warnings = []
    if data.running:
        running = sum(t.state.name in ("RUNNING", "WAITING") for t in data.trials)
        warnings.append({"kind": "partial", "text": f"{running} trial(s) still running or waiting: this report "
                                                    "is partial; run `lrfind report` again later"})
    if data.recommendation is None:
        warnings.append({"kind": "partial", "text": "no recommendation.json yet: the study has not finished; "
                                                    "the card shows the best trial so far"})
    probe = data.probe or {}
    if probe.get("status") and probe["status"] != "converged":
        warnings.append({"kind": "probe",
                         "text": f"probe not converged ({probe['status']}): {probe.get('advice', '')}"})
    failed = [t for t in data.trials if t.state.name == "FAIL"]
    for trial in failed[:MAX_FAILED_LISTED]:
        reason = trial.user_attrs.get("fail_reason") or "no reason recorded"
        warnings.append({"kind": "failed", "trial": trial.number, "text": f"trial {trial.number} failed: {reason}"})
    if len(failed) > MAX_FAILED_LISTED:
        warnings.append({"kind": "failed", "text": f"... and {len(failed) - MAX_FAILED_LISTED} more failed trials"})
    if data.user_attrs.get("clip_calibrated") is False:
        model = data.user_attrs.get("clip_model", "the CLIP model")
        warnings.append({"kind": "clip", "text": f"CLIP scores are uncalibrated ({model} is not a trained CLIP): "
                                                 "they rank these trials only and mean nothing in absolute terms"})
    return warnings


def _get_trials_table_info(data: StudyData):
    """The trials as a pandas DataFrame (Optuna's trials_dataframe), big nested attributes dropped."""
    import pandas as pd

    value_attr = "values" if data.multi_objective else "value"
    frame = data.study.trials_dataframe(attrs=("number", value_attr, "state", "duration", "params", "user_attrs"))
    if frame.empty:
        return pd.DataFrame(columns=["number", "state"])
    frame = frame.drop(columns=[c for c in frame.columns if c.removeprefix("user_attrs_") in TABLE_DROPPED_ATTRS])
    if "user_attrs_full_run" in frame:  # {"steps", "text"}: the text is the recommendation's step math
        frame["user_attrs_full_run"] = frame["user_attrs_full_run"].map(
            lambda v: v.get("steps") if isinstance(v, dict) else v)
        frame = frame.rename(columns={"user_attrs_full_run": "full-run steps"})
    if "duration" in frame:
        frame["duration"] = frame["duration"].dt.total_seconds().round(1)
        frame = frame.rename(columns={"duration": "seconds (wall)"})
    # Optuna names multi-objective columns values_<i> or values_<metric name>; a metric name may
    # also be a user attribute (clip_i), so the objectives get a "value " prefix.
    names = [f"value {name}" for name in objective_names(data)] if data.multi_objective else []
    renames = {f"values_{key}": name for i, name in enumerate(names)
               for key in (i, name.removeprefix("value "))}
    frame = frame.rename(columns=lambda c: renames.get(c, c.removeprefix("params_").removeprefix("user_attrs_")))
    if "best_epoch" in frame:  # a swept trial's epochs (lrfind.study.epoch_sweep) is its best epoch
        frame["epochs"] = frame["epochs"].fillna(frame["best_epoch"]) if "epochs" in frame else frame["best_epoch"]
    for column in frame.columns:  # lists/dicts left in user attrs: readable text, not repr soup
        if frame[column].map(lambda v: isinstance(v, (list, dict))).any():
            frame[column] = frame[column].map(lambda v: str(v) if isinstance(v, (list, dict)) else v)
    first = ["number", "state", "value", *names, "val_loss", "val_loss_ratio", "clip_i", "clip_t",
             "steps_done", "steps_planned"]
    order = [c for c in first if c in frame.columns] + [c for c in frame.columns if c not in first]
    return frame[order].reset_index(drop=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("lrfind", "optuna", "plotly", "pandas"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    found["python"] = platform.python_version()
    return found


def _dataset_rows(stats: Optional[dict]) -> list[list[str]]:
    if not stats:
        return []
    rows = []
    for concept in stats.get("concepts", []):
        buckets = ", ".join(f"{b[0]}×{b[1]}: {n}" for b, n in concept.get("images_per_bucket", []))
        images = sum(n for _, n in concept.get("images_per_bucket", []))
        rows.append([concept.get("folder", ""), str(images), str(concept.get("repeats", "")), buckets])
    if stats.get("reg_images"):
        rows.append(["regularisation images", str(len(stats["reg_images"])), "", ""])
    return rows


def _get_environment_info(data: StudyData) -> dict:
    attrs = data.user_attrs
    environment = attrs.get("environment") or {}
    stats = attrs.get("dataset_stats")
    study_rows = [["study", data.name], ["storage", data.storage_url], ["study folder", str(data.study_dir)],
                  ["model", attrs.get("model")], ["CLIP model", attrs.get("clip_model")],
                  ["CLIP calibrated", attrs.get("clip_calibrated")], ["objective", attrs.get("objective")],
                  ["directions", ", ".join(data.directions)],
                  ["baseline val loss", attrs.get("baseline_val_loss")]]
    return {
        "study": [[k, _number_text(v)] for k, v in study_rows if v is not None],
        "study_environment": [[str(k), _number_text(v)] for k, v in environment.items()],
        "report_environment": [[k, v] for k, v in _versions().items()],
        "dataset_name": (stats or {}).get("name") or ((data.probe or {}).get("dataset") or {}).get("name"),
        "dataset": _dataset_rows(stats),
        "dataset_images": sum(n for c in (stats or {}).get("concepts", []) for _, n in c.get("images_per_bucket", [])),
    }
