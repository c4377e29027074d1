"""The probe's held-out images on the tiny model: never in its training batches, their loss
reported and deterministic, the study's own split when a study runs it, its options on the
command line, and a probe.json of another split reused with a note."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from lrfind.cli import main
from lrfind.probe.config import ProbeConfig
from test_holdout_study import _BatchSpy, _scan, _ValidationSpy


def _probe(example_dataset, out, tiny, feature_store, **overrides):
    from lrfind.probe.probe import run_probe

    values = dict(dataset={"train_dir": example_dataset, "resolution": 64, "batch_size": 2}, model={"model": "tiny"},
                  steps=24, out=out, progress=False)
    return run_probe(ProbeConfig(**{**values, **overrides}), components=tiny, store=feature_store)


def test_the_probe_never_trains_on_a_held_out_image_and_reports_its_loss(example_dataset, tmp_path, tiny,
                                                                         feature_store, monkeypatch):
    batches, validation = _BatchSpy(monkeypatch), _ValidationSpy(monkeypatch)
    report = _probe(example_dataset, tmp_path / "a", tiny, feature_store, method="both", range_steps=12,
                    range_eval_every=4)
    held = report.held_out
    # the study's split of the example: one of the cat folder's 6 images; the cup folder (2) is too small
    assert held.source == "split" and len(held.images) == 1 and held.images[0].startswith("10_lrfcat cat/")
    assert held.fraction == 0.2 and held.min_images == 4 and held.seed == 42
    assert any("5_lrfcup cup" in w for w in held.warnings)
    held_paths = {Path(example_dataset) / p for p in held.images}
    assert batches.calls >= 2 and not batches.paths & held_paths  # neither the d*lr probe nor the range test
    assert batches.paths == {r.path for r in _scan(example_dataset).train_images} - held_paths
    assert validation.keys and all(set(k) == held_paths for k in validation.keys)  # validated on them only
    # the base model's loss, then at 4 evaluations evenly over the 24 steps, the last at the end
    assert held.baseline_loss > 0 and [s for s, _ in held.losses] == [6, 12, 18, 24]
    assert held.loss_at_end == held.losses[-1][1] and held.reason == ""
    assert held.loss_at_end != held.baseline_loss  # the probe's training moved it
    assert report.range_test.points and report.unet_lr  # the probe still finds an lr
    assert report.dataset.images == 8  # the step math is a real run's: every image
    written = json.loads((tmp_path / "a" / "probe.json").read_text())
    assert written["schema_version"] == 2 and written["held_out"]["images"] == list(held.images)

    again = _probe(example_dataset, tmp_path / "b", tiny, feature_store, method="both", range_steps=12,
                   range_eval_every=4)
    assert again.held_out == held and again.curve == report.curve  # deterministic


def test_too_few_images_warn_and_the_probe_still_runs_without_held_out_loss(example_dataset, tmp_path, tiny,
                                                                            feature_store, monkeypatch, capsys):
    from lrfind.probe.probe import summary_text

    batches = _BatchSpy(monkeypatch)
    report = _probe(example_dataset, tmp_path / "p", tiny, feature_store, validation_min_images=7)
    held = report.held_out
    assert held.source == "none" and held.images == () and held.baseline_loss is None and held.losses == ()
    assert held.loss_at_end is None and "fewer than 7" in held.reason and report.unet_lr
    assert batches.paths == {r.path for r in _scan(example_dataset).train_images}  # every image trains
    text = summary_text(report, tmp_path / "p")
    assert "warning: concept folder 10_lrfcat cat has 6 image(s), fewer than 7" in text
    assert "no held-out loss: no image held out" in text


def test_a_validation_dir_holds_its_images_and_every_dataset_image_trains(example_dataset, tmp_path, tiny,
                                                                          feature_store, monkeypatch):
    folder = tmp_path / "holdout" / "1_lrfcat cat"
    shutil.copytree(Path(example_dataset) / "10_lrfcat cat", folder)
    for extra in sorted(folder.iterdir())[2:]:
        extra.unlink()
    batches = _BatchSpy(monkeypatch)
    report = _probe(example_dataset, tmp_path / "p", tiny, feature_store, validation_dir=tmp_path / "holdout")
    assert report.held_out.source == "dir" and report.held_out.dir == str(tmp_path / "holdout")
    assert report.held_out.images and report.held_out.baseline_loss > 0
    assert batches.paths == {r.path for r in _scan(example_dataset).train_images}


def test_a_study_runs_its_probe_on_its_own_split(example_dataset, tmp_path, monkeypatch):
    from lrfind.probe.held_out import PROBE_SPLIT_NOTE_ATTR
    from lrfind.study.config import StudyConfig
    from lrfind.study.runner import run_study

    batches = _BatchSpy(monkeypatch)
    out = tmp_path / "studies" / "s"
    # a split other than the probe's default (seed 7, a third of each folder): the probe must take the study's
    cfg = StudyConfig(dataset={"train_dir": example_dataset},
                      name="s", space="tiny", n_trials=1, trial_budget=8, out=out,
                      progress=False, score="loss", probe_steps=40, seed=7, validation_split=0.34)
    outcome = run_study(cfg)
    study = optuna.load_study(study_name="s", storage=cfg.storage_url())
    record = study.user_attrs["held_out"]
    probe = json.loads((out / "probe.json").read_text())
    assert len(record["images"]) == 2 and probe["held_out"]["images"] == record["images"]
    assert probe["held_out"]["seed"] == 7 and probe["held_out"]["baseline_loss"] > 0
    assert not batches.paths & {Path(example_dataset) / p for p in record["images"]}  # probe and trial alike
    assert PROBE_SPLIT_NOTE_ATTR not in study.user_attrs and not any("probe.json" in w for w in outcome.warnings)


def test_a_probe_json_of_another_split_is_reused_for_its_lr_with_a_note(example_dataset, tmp_path, tiny,
                                                                        feature_store, monkeypatch):
    from lrfind.probe.held_out import PROBE_SPLIT_NOTE_ATTR
    from lrfind.study.config import StudyConfig
    from lrfind.study.runner import run_study

    out = tmp_path / "studies" / "r"
    report = _probe(example_dataset, out, tiny, feature_store, validation_split=0.0)  # held nothing out
    before = (out / "probe.json").read_text()
    cfg = StudyConfig(dataset={"train_dir": example_dataset},
                      name="r", space="tiny", n_trials=1, trial_budget=8, out=out,
                      progress=False, score="loss")
    outcome = run_study(cfg)
    study = optuna.load_study(study_name="r", storage=cfg.storage_url())
    note = study.user_attrs[PROBE_SPLIT_NOTE_ATTR]
    assert "holds out other images than the study (1 of the study's 1 held-out image(s) were trained on" in note
    assert note in outcome.warnings and (out / "probe.json").read_text() == before  # reused, not rerun
    assert study.user_attrs["probe"]["unet_lr"] == report.unet_lr
    resumed = run_study(cfg.model_copy(update={"n_trials": 2}))
    assert note in resumed.warnings  # a resumed run says it again


def test_reused_split_notes_name_what_the_probe_held_out(example_dataset):
    from lrfind.artifacts.probe_report import HeldOutLoss, ProbeReport, ProbeSource
    from lrfind.data.held_out_images import HeldOutImages
    from lrfind.probe.held_out import reused_split_note

    dataset = _scan(example_dataset)
    record = {"source": "split", "images": ["10_lrfcat cat/01.jpg"], "fraction": 0.2, "min_images": 4, "seed": 42}
    held = HeldOutImages(dataset, (dataset.train_images[0],), "split", (), record)
    same = ProbeReport(held_out=HeldOutLoss(**record))
    assert reused_split_note(same, held, Path("p.json")) is None
    old = reused_split_note(ProbeReport(), held, Path("p.json"))
    assert old.startswith("p.json was made before the probe held images out") and "1 held-out" in old
    kohya = reused_split_note(ProbeReport(source=ProbeSource(tensorboard="/logs")), held, Path("p.json"))
    assert kohya.startswith("p.json read a kohya log")
    other = ProbeReport(held_out=HeldOutLoss(**{**record, "images": ["10_lrfcat cat/02.jpg"], "seed": 1}))
    assert "(1 of the study's 1 held-out image(s) were trained on" in reused_split_note(other, held, Path("p.json"))
    none = HeldOutImages(dataset, (), "none", (), {"source": "none", "images": []})
    assert reused_split_note(ProbeReport(held_out=HeldOutLoss(source="none")), none, Path("p.json")) is None


def test_probe_held_out_flags_reach_the_run(example_dataset, tmp_path, capsys):
    out = tmp_path / "probe"
    assert main(["probe", str(example_dataset), "--resolution", "64", "--steps", "8", "--out", str(out),
                 "--validation-split", "0.5", "--validation-min-images", "2", "--held-out-evals", "2",
                 "--no-progress"]) == 0
    held = json.loads((out / "probe.json").read_text())["held_out"]
    assert held["fraction"] == 0.5 and held["min_images"] == 2 and len(held["images"]) == 4  # 3 cats, 1 cup
    assert [row[0] for row in held["losses"]] == [4, 8]
    assert "held-out loss on 4 image(s)" in capsys.readouterr().out


@pytest.mark.parametrize("flags, needle", [
    (["--validation-split", "1.5"], "validation_split"),
    (["--validation-split", "-0.1"], "validation_split"),
    (["--validation-min-images", "1"], "validation_min_images"),
    (["--held-out-evals", "0"], "held_out_evals"),
    (["--validation-dir", "NOPE"], "--validation-dir"),
])
def test_bad_held_out_options_exit_2_in_one_line(flags, needle, example_dataset, tmp_path, capsys):
    out = tmp_path / "probe"
    flags = [str(tmp_path / f) if f == "NOPE" else f for f in flags]
    rc = main(["probe", str(example_dataset), "--resolution", "64", "--steps", "8", "--out", str(out),
               "--no-progress", *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not (out / "probe.json").exists()
