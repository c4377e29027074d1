"""The trials table: Optuna's trials_dataframe, big nested attributes dropped, sortable in the page."""

from __future__ import annotations

from lrfind.report.data import StudyData
from lrfind.report.sections.common import Fragment, section
from lrfind.report.sections.objectives import objective_names

# Dropped from the trials table: big, or the same in every row and shown elsewhere (the prompts
# head the samples section, CLIP calibration is in the warnings and the environment); metrics.json
# keeps them.
# the objective's weighted terms (lrfind.study.scoring.ObjectiveTerms), each its own column
OBJECTIVE_TERMS = ("loss", "drift", "clip_i", "clip_t", "dino")  # dino: a study with --dino
TABLE_DROPPED_ATTRS = ("val_history", "train_values", "samples", "lrfind_worker", "sample_prompts", "sample_seeds",
                       "clip_calibrated")


def _get_trials_table_info(data: StudyData):
    """The trials as a pandas DataFrame (its columns are the study's own: genuinely open)."""
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
    if "user_attrs_objective_terms" in frame:  # {"loss", "drift", ...}: one column per weighted term
        terms = frame.pop("user_attrs_objective_terms")
        for name in OBJECTIVE_TERMS:
            column = terms.map(lambda v, n=name: v.get(n) if isinstance(v, dict) else None)
            if column.notna().any():  # a term no trial has (dino without --dino) gets no empty column
                frame[f"term {name}"] = column
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
    first = ["number", "state", "value", *names, "val_loss", "val_loss_ratio", "drift", "clip_i", "clip_t", "dino",
             *[f"term {name}" for name in OBJECTIVE_TERMS], "diagnosis", "steps_done", "steps_planned"]
    order = [c for c in first if c in frame.columns] + [c for c in frame.columns if c not in first]
    return frame[order].reset_index(drop=True)


def trials_table_html(frame) -> Fragment:
    table = frame.to_html(index=False, escape=True, na_rep="", classes="trials sortable", border=0,
                          float_format=lambda v: f"{v:.4g}", table_id="trials-table")
    return section("trials", "Trials", "Click a column header to sort; scroll sideways for every column.",
                   f'<div class="scroll">{table}</div>')
