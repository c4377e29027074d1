"""A study's held-out images on the tiny model: recorded once, never in any trial's batches, the
same on resume, and validated on (trials and baseline alike)."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from lrfind.errors import LrfindError
from lrfind.study.config import StudyConfig
from test_study_options import probe_report  # noqa: F401 - the fixture: a probe of the example on tiny


def _config(example_dataset, tmp_path, probe_report, **overrides) -> StudyConfig:
    out = tmp_path / "studies" / overrides.get("name", "h")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(probe_report, out / "probe.json")
    values = dict(dataset={"train_dir": example_dataset}, name="h", space="tiny", n_trials=2, trial_budget=8, out=out,
                  progress=False, score="loss", heartbeat_interval=1, grace_period=2)
    return StudyConfig(**{**values, **overrides})


class _BatchSpy:
    """Wraps the loop's epoch_batches: every image path any trial's batches hold."""

    def __init__(self, monkeypatch):
        import lrfind.training.loop as loop

        self.paths: set[Path] = set()
        self.calls = 0
        real = loop.epoch_batches

        def spy(items, *args, **kwargs):
            batches = real(items, *args, **kwargs)
            self.calls += 1
            self.paths.update(Path(item.record.path) for batch in batches for item in batch)
            return batches

        monkeypatch.setattr(loop, "epoch_batches", spy)


class _ValidationSpy:
    """Every set of captions/paths a ValidationSet is built for (the study builds one, shared)."""

    def __init__(self, monkeypatch):
        import lrfind.training.setup as setup

        self.keys: list[tuple] = []
        real = setup.validation_key

        def spy(paths, *args, **kwargs):
            self.keys.append(tuple(Path(p) for p in paths))
            return real(paths, *args, **kwargs)

        monkeypatch.setattr(setup, "validation_key", spy)


def test_held_out_images_are_never_trained_on_and_survive_resume(example_dataset, tmp_path, probe_report,
                                                                   monkeypatch):
    from lrfind.study.runner import run_study

    events = []
    batches, validation = _BatchSpy(monkeypatch), _ValidationSpy(monkeypatch)
    cfg = _config(example_dataset, tmp_path, probe_report)
    outcome = run_study(cfg, progress=lambda text, transient: events.append(text) if not transient else None)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    record = study.user_attrs["held_out"]
    held = {Path(example_dataset) / p for p in record["images"]}
    # the example's cat folder (6 images) holds one out; its cup folder (2) is too small and says so
    assert record["source"] == "split" and len(held) == 1 and next(iter(held)).parent.name == "10_lrfcat cat"
    assert any("5_lrfcup cup" in w for w in outcome.warnings)
    assert any(e.startswith("warning:") and "5_lrfcup cup" in e for e in events)
    assert batches.calls > 0 and batches.paths and not batches.paths & held  # no trial's batch holds one
    trained = {r.path for c in _scan(example_dataset).concepts for r in c.images} - held
    assert batches.paths == trained  # ... and every other image trains
    assert validation.keys and all(set(k) == held for k in validation.keys)  # baseline and trials validate on it
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert complete and all(t.user_attrs["drift"] > 0 and t.user_attrs["epoch_drifts"] for t in complete)
    # the final run trains on all 8 images; its steps math says so
    assert "all 8 images train" in outcome.recommendation.steps_math

    # resume (another worker alike): the split is read back, not recomputed
    import lrfind.data.held_out_images as held_out_images  # where a study (and a probe) picks a new split

    monkeypatch.setattr(held_out_images, "holdout_split", _refuse)
    batches.paths.clear()
    run_study(cfg.model_copy(update={"n_trials": 3}))
    again = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    assert again.user_attrs["held_out"] == record
    assert batches.paths and not batches.paths & held
    with pytest.raises(LrfindError, match="--validation-split 0.3"):
        run_study(cfg.model_copy(update={"n_trials": 4, "validation_split": 0.3}))


def test_validation_dir_holds_the_images_and_every_dataset_image_trains(example_dataset, tmp_path, probe_report,
                                                                          monkeypatch):
    from lrfind.study.runner import run_study

    holdout = tmp_path / "holdout"
    shutil.copytree(Path(example_dataset) / "10_lrfcat cat", holdout / "1_lrfcat cat")
    for extra in sorted((holdout / "1_lrfcat cat").iterdir())[2:]:
        extra.unlink()  # two images (and whatever caption files sort first) are enough
    batches, validation = _BatchSpy(monkeypatch), _ValidationSpy(monkeypatch)
    cfg = _config(example_dataset, tmp_path, probe_report, n_trials=1, validation_dir=holdout)
    run_study(cfg)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    record = study.user_attrs["held_out"]
    held = {holdout / p for p in record["images"]}
    assert record["source"] == "dir" and held and all(p.parent.parent == holdout for p in held)
    assert batches.paths == {r.path for r in _scan(example_dataset).train_images}
    assert all(set(k) == held for k in validation.keys)


def test_too_few_images_warn_and_the_study_validates_on_training_images(example_dataset, tmp_path, probe_report):
    from lrfind.study.runner import run_study

    cfg = _config(example_dataset, tmp_path, probe_report, n_trials=1, validation_min_images=7)
    outcome = run_study(cfg)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    assert study.user_attrs["held_out"]["source"] == "none" and study.user_attrs["held_out"]["images"] == []
    assert any("validate on their training images" in w for w in outcome.warnings)
    assert "held out" not in outcome.recommendation.steps_math
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


def _scan(dataset):
    from lrfind.config import DatasetConfig
    from lrfind.data.kohya import scan_dataset

    return scan_dataset(DatasetConfig(train_dir=dataset, resolution=64), log_warnings=False)


def _refuse(*args, **kwargs):
    raise AssertionError("a resumed study recomputed its held-out split")
