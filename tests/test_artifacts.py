"""The typed, versioned files lrfind writes (lrfind.artifacts): round trips, the keys earlier lrfind
wrote, files without schema_version, and a hand-broken file -> one line naming the file and field."""

from __future__ import annotations

import json

import pytest

from lrfind.artifacts import (Closeness, ConceptRepeat, EpochRow, FinalSummary, ProbeReport, Recommendation,
                              TrialMetrics, read_final_summary, read_probe_report, read_recommendation,
                              read_trial_metrics)
from lrfind.errors import LrfindError

# probe.json as lrfind wrote it before artifacts had versions (a Prodigy probe with a range test)
OLD_PROBE = {
    "source": {"dataset": "/data/cats", "model": "tiny"}, "optimizer": "prodigy", "method": "both",
    "network_dim": 8, "network_alpha": 8.0, "network_module": "networks.lora", "network_args": {},
    "resolution": 64, "batch_size": 1, "seed": 42,
    "status": "converged", "plateau_value": 0.0123, "plateau_step": 61, "confidence": 0.9, "advice": "ok",
    "steps": 200, "unet_lr": 0.005, "adamw_lr": 0.005, "lion_lr": 0.00167, "lion_weight_decay_factor": 3.0,
    "text_encoder_lr": 0.00125, "text_encoder_lr_range": [0.0005, 0.0025],
    "prodigy": {"lr": 1.0, "d_coef": 1.0}, "rescale_rule": "lr(dim, alpha) = ...",
    "range_test": {"status": "ok", "suggested_lr": 0.004, "min_loss_lr": 0.02, "diverged_at_lr": None,
                   "advice": "fine", "points": [[5, 1e-6, 0.31], [10, 1e-5, float("nan")]]},
    "dataset": {"name": "cats", "concepts": ["cat"], "images_repeats": [[6, 10]], "images": 6,
                "steps_per_epoch": 60},
    "curve": [[1, 1e-6, 0.3], [2, None, 0.29]], "tensorboard": "/tmp/logs/probe_prodigy",
}

# recommendation.json as lrfind wrote it before artifacts had versions
OLD_RECOMMENDATION = {
    "trial_number": 3, "value": 0.81, "direction": "minimize",
    "params": {"network_dim": 8, "network_alpha_fraction": 0.5, "epochs": 4, "lr_multiplier": 1.0},
    "network_dim": 8, "network_alpha": 4.0, "epochs": 4, "repeats": None,
    "concept_repeats": [{"folder": "10_cat", "concept": "cat", "repeats": 10, "folder_name": "10_cat"}],
    "optimizer": "AdamW", "optimizer_args": {"weight_decay": 0.01}, "unet_lr": 0.001, "text_encoder_lr": None,
    "lr_scheduler": "constant", "total_steps": 240, "steps_math": "6 images × 10 repeats × 4 epochs / batch 1 = 240 steps",
    "trial_steps": 60, "budget_scale": 0.25,
    "train_values": {"network_dim": 8, "network_alpha": 4.0, "max_train_epochs": 4, "max_train_steps": None},
    "closeness": {"completed": 2, "pruned": 1, "failed": 0, "runner_up": 1, "runner_up_gap": 0.02, "spread": 0.02,
                  "relative_gap": 1.0, "top": [[3, 0.81], [1, 0.83]]},
    "agreement": {"network_dim": {"values": [8, 4], "agree": False}},
    "confidence": "low", "metrics": {"val_loss": 0.2, "steps_done": 60}, "epoch_losses": {},
    "network_type": "lora", "network_module": "networks.lora", "network_args": {}, "summary": "Recommended ...",
}


def _json(data: dict) -> dict:
    return json.loads(json.dumps(data))  # NaN and tuples as a JSON file holds them


def _same(a, b) -> bool:  # NaN != NaN: compare the JSON text
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_an_old_probe_json_reads_as_version_1_and_writes_the_same_keys(tmp_path):
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(OLD_PROBE), encoding="utf-8")
    report = read_probe_report(path)
    assert report.schema_version == 1
    assert report.unet_lr == 0.005 and report.derived.text_encoder_lr_range == (0.0005, 0.0025)
    assert report.range_test.points[1][0] == 10 and report.dataset.images_repeats == ((6, 10),)
    assert _same(_json(report.to_dict()), {"schema_version": 1, **_json(OLD_PROBE)})
    assert list(report.to_dict())[1:] == list(OLD_PROBE)  # the same keys, in the same order


def test_probe_report_round_trips_and_leaves_out_what_it_has_not():
    report = ProbeReport.from_dict(OLD_PROBE)
    assert ProbeReport.from_json(report.to_json()).to_json() == report.to_json()
    # a range test alone: no plateau keys, no derived lrs (as before)
    range_only = ProbeReport(optimizer="prodigy", method="range", network_dim=8, network_alpha=8.0,
                             range_test=report.range_test)
    keys = set(range_only.to_dict())
    assert not keys & {"status", "plateau_value", "advice", "unet_lr", "prodigy", "dataset", "tensorboard"}
    assert {"range_test", "curve", "source"} <= keys
    assert ProbeReport.from_json(range_only.to_json()).to_json() == range_only.to_json()  # NaN != NaN
    # a plateau without a value keeps plateau_value: null, as before
    stuck = ProbeReport(status="stuck_at_d0", plateau_value=None, confidence=0.0, advice="raise d0", steps=10)
    assert stuck.to_dict()["plateau_value"] is None and "unet_lr" not in stuck.to_dict()


# probe.json's held_out part (version 2) as lrfind.probe writes it
HELD_OUT = {"source": "split", "images": ["10_cat/01.jpg"], "fraction": 0.2, "min_images": 4, "seed": 42,
            "dir": None, "warnings": [], "baseline_loss": 0.31, "losses": [[100, 0.3], [200, 0.29]],
            "loss_at_end": 0.29, "reason": ""}


def test_a_version_2_probe_json_keeps_its_held_out_part_and_version_1_has_none(tmp_path):
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"schema_version": 2, **OLD_PROBE, "held_out": HELD_OUT}), encoding="utf-8")
    report = read_probe_report(path)
    assert report.schema_version == 2 and report.held_out.losses == ((100, 0.3), (200, 0.29))
    assert report.held_out.split_record == {"source": "split", "images": ["10_cat/01.jpg"], "fraction": 0.2,
                                            "min_images": 4, "seed": 42}
    assert _json(report.to_dict()) == {"schema_version": 2, **_json(OLD_PROBE), "held_out": HELD_OUT}
    assert ProbeReport.from_dict(report.study_attribute()).held_out == report.held_out  # the study keeps it
    assert ProbeReport.from_dict(OLD_PROBE).held_out is None and "held_out" not in ProbeReport.from_dict(OLD_PROBE).to_dict()
    assert ProbeReport().schema_version == 2  # a new report is written as the latest version


def test_the_study_keeps_the_probe_without_its_curves():
    attribute = ProbeReport.from_dict(OLD_PROBE).study_attribute()
    assert "curve" not in attribute and "range_test" not in attribute and attribute["unet_lr"] == 0.005
    assert ProbeReport.from_dict(attribute).unet_lr == 0.005


def test_recommendation_round_trips_and_an_old_file_reads(tmp_path):
    path = tmp_path / "recommendation.json"
    path.write_text(json.dumps(OLD_RECOMMENDATION), encoding="utf-8")
    rec = read_recommendation(path)
    assert rec.schema_version == 1 and rec.closeness.top == ((3, 0.81), (1, 0.83))
    assert rec.agreement["network_dim"].agree is False and rec.repeats_by_folder() == {"10_cat": 10}
    assert rec.metrics == {"val_loss": 0.2, "steps_done": 60} and isinstance(rec.metrics["steps_done"], int)
    assert _json(rec.to_dict()) == {"schema_version": 1, **OLD_RECOMMENDATION}
    assert Recommendation.from_json(rec.to_json()) == rec
    assert Recommendation.from_json(path) == rec


def test_trial_metrics_round_trip_and_user_attributes(tmp_path):
    metrics = TrialMetrics(number=4, params={"network_dim": 8}, val_loss=0.2, val_history=[(10, 0.3), (20, 0.2)],
                           steps_done=20, steps_planned=20, clip_i=None, clip_t=None,
                           full_run={"steps": 80, "text": "80 steps"}, val_loss_ratio=0.9, seconds=1.5)
    path = tmp_path / "metrics.json"
    path.write_text(metrics.to_json(), encoding="utf-8")
    assert read_trial_metrics(path) == metrics
    # the keys a loss-only trial had in its user attributes before (clip_i/clip_t null, nothing else)
    assert list(metrics.user_attributes()) == ["val_loss", "val_history", "steps_done", "steps_planned", "clip_i",
                                               "clip_t", "full_run", "val_loss_ratio", "seconds"]
    again = TrialMetrics.from_user_attributes(4, {"network_dim": 8}, {**metrics.user_attributes(),
                                                                     "lrfind_worker": {"pid": 1}})
    assert again == metrics  # the study's own attributes (the worker) are not metrics


def test_final_summary_round_trip(tmp_path):
    summary = FinalSummary(output_name="cat", epochs=[EpochRow(epoch=1, step=7, val_loss=0.3, file="cat-000001.safetensors"),
                                                      EpochRow(epoch=2, step=14, val_loss=0.25, clip_i=0.6,
                                                               file="cat.safetensors", samples=["sample/a.png"])],
                           suggested_epoch=2, suggested_file="cat.safetensors", reason="epoch 2: lowest loss",
                           xy_grid=None, xy_weights=[0.5, 1.0], prompts=[("a cat", 1)], clip_calibrated=None)
    path = tmp_path / "cat_final.json"
    path.write_text(summary.to_json(), encoding="utf-8")
    assert read_final_summary(path) == summary
    assert set(json.loads(path.read_text())) == {"schema_version", "output_name", "epochs", "suggested_epoch",
                                                 "suggested_file", "reason", "xy_grid", "xy_weights", "prompts",
                                                 "clip_calibrated", "base_val_loss"}


@pytest.mark.parametrize("broken, field", [
    ({**OLD_PROBE, "unet_lr": "fast"}, "field unet_lr: Input should be a valid number"),
    ({**OLD_PROBE, "dataset": {**OLD_PROBE["dataset"], "images": "six"}}, "field dataset.images: "),
    ({**OLD_PROBE, "unet_lr": 0.1, "adamw_lr": None}, "field adamw_lr: "),
    ({**OLD_PROBE, "surprise": 1}, "field surprise: not a field of this file"),
    ({**OLD_PROBE, "schema_version": 3}, "field schema_version: Value error, schema version 3"),
    ({**OLD_PROBE, "schema_version": 2, "held_out": {**HELD_OUT, "baseline_loss": "low"}},
     "field held_out.baseline_loss: Input should be a valid number"),
    ({**OLD_PROBE, "schema_version": 2, "held_out": {**HELD_OUT, "source": "elsewhere"}}, "field held_out.source: "),
    ({**OLD_PROBE, "schema_version": 2, "held_out": {**HELD_OUT, "losses": [[6]]}}, "field held_out.losses.0.1: Field required"),
])
def test_a_hand_broken_probe_json_is_one_line_naming_file_and_field(tmp_path, broken, field):
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(LrfindError) as err:
        read_probe_report(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {field}") and message.endswith("; rerun lrfind probe")
    assert "\n" not in message


@pytest.mark.parametrize("broken, field", [
    ({k: v for k, v in OLD_RECOMMENDATION.items() if k != "trial_number"}, "field trial_number: Field required"),
    ({**OLD_RECOMMENDATION, "closeness": {**OLD_RECOMMENDATION["closeness"], "completed": "two"}},
     "field closeness.completed: "),
    ({**OLD_RECOMMENDATION, "train_values": {"network_dim": 8}}, "field train_values: "),
])
def test_a_hand_broken_recommendation_names_file_and_field(tmp_path, broken, field):
    path = tmp_path / "recommendation.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(LrfindError, match="rerun `lrfind study`") as err:
        read_recommendation(path)
    assert str(err.value).startswith(f"{path}: {field}") and "\n" not in str(err.value)


def test_not_json_or_missing_is_one_line(tmp_path):
    path = tmp_path / "probe.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(LrfindError, match=r"probe.json: not valid JSON .*; rerun lrfind probe"):
        read_probe_report(path)
    with pytest.raises(LrfindError, match="nothing.json: not found"):
        read_final_summary(tmp_path / "nothing.json")


def test_artifacts_are_frozen():
    rec = Recommendation.from_dict(OLD_RECOMMENDATION)
    with pytest.raises(Exception, match="frozen"):
        rec.unet_lr = 1.0
    with pytest.raises(Exception, match="frozen"):
        rec.closeness.completed = 9
    assert isinstance(rec.closeness, Closeness) and isinstance(rec.concept_repeats[0], ConceptRepeat)


# --- through the CLI: exit 2, one line --------------------------------------------------------------


def test_lrfind_train_from_study_with_a_broken_recommendation(example_dataset, tmp_path, capsys):
    from lrfind.cli import main

    study = tmp_path / "studies" / "cats"
    study.mkdir(parents=True)
    (study / "recommendation.json").write_text(json.dumps({**OLD_RECOMMENDATION, "epochs": "four"}))
    rc = main(["train", str(example_dataset), "--from-study", "cats", "--study-dir", str(study)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err == (f"lrfind: error: {study / 'recommendation.json'}: field epochs: Input should be a valid integer, "
                   "unable to parse string as an integer; rerun `lrfind study` to rewrite it")


def test_lrfind_study_with_a_broken_probe_json(example_dataset, tmp_path, capsys):
    from lrfind.cli import main

    out = tmp_path / "studies" / "broken"
    out.mkdir(parents=True)
    (out / "probe.json").write_text(json.dumps({**OLD_PROBE, "unet_lr": "fast"}))
    rc = main(["study", str(example_dataset), "--name", "broken", "--space", "tiny", "--n-trials", "1",
               "--trial-budget", "8", "--score", "loss", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"lrfind: error: {out / 'probe.json'}: field unet_lr: Input should be a valid number")
    assert err.endswith("; rerun lrfind probe")


def test_artifacts_import_only_pydantic_the_stdlib_and_lrfinds_root_modules():
    import sys

    from test_import_layers import IMPORTS, LAYERS, PACKAGE_ROOT, module_files, owner

    modules = [m for m in module_files(PACKAGE_ROOT) if m.startswith("lrfind.artifacts")]
    assert "lrfind.artifacts.probe_report" in modules
    bad = [str(i) for i in IMPORTS if i.module in modules
           and not (i.target.split(".")[0] in sys.stdlib_module_names or i.target.split(".")[0] == "pydantic"
                    or i.target.startswith("lrfind.artifacts")
                    or (i.target.startswith("lrfind.") and owner(i.target, LAYERS) == "lrfind"))]
    assert not bad, "\n".join(bad)
