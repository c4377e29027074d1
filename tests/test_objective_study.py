"""The objective on a tiny study: every term recorded, CLIP-I given exactly the held-out images,
--pareto over loss, drift and CLIP (issue 17, item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from lrfind.study.config import StudyConfig
from test_holdout_study import _config as held_out_study_config
from test_study_options import probe_report  # noqa: F401 - the fixture: a probe of the example on tiny


def _config(example_dataset, tmp_path, probe_report, **overrides) -> StudyConfig:
    """test_holdout_study's study, named "o", one trial, scored with CLIP."""
    return held_out_study_config(example_dataset, tmp_path, probe_report,
                                 **{"name": "o", "n_trials": 1, "score": "full", **overrides})


class _ReferenceSpy:
    """What CLIP-I is given: the records whose images the study embeds as its reference, and the
    reference every trial's score_samples receives."""

    def __init__(self, monkeypatch):
        import lrfind.study.objective as objective
        import lrfind.study.sample_scorers as sample_scorers  # where the study embeds its reference images

        self.records: list = []
        self.given: list = []
        real_load, real_score = sample_scorers.load_reference_images, objective.score_samples

        def load(records):
            self.records.append(tuple(records))
            return real_load(records)

        def score(components, lora, prompts, reference, scorer, **kwargs):
            self.given.append((reference, scorer))
            return real_score(components, lora, prompts, reference, scorer, **kwargs)

        monkeypatch.setattr(sample_scorers, "load_reference_images", load)
        monkeypatch.setattr(objective, "score_samples", score)


def _held_out_paths(study, example_dataset) -> set[Path]:
    return {Path(example_dataset) / p for p in study.user_attrs["held_out"]["images"]}


def test_every_term_is_recorded_and_clip_i_compares_with_the_held_out_images(
        example_dataset, tmp_path, probe_report, monkeypatch):
    from lrfind.scoring.samples import load_reference_images
    from lrfind.study.runner import run_study

    spy = _ReferenceSpy(monkeypatch)
    cfg = _config(example_dataset, tmp_path, probe_report)
    run_study(cfg)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    held = _held_out_paths(study, example_dataset)
    assert held and study.user_attrs["clip_i_reference"] == "held-out"
    [records] = spy.records
    assert {Path(r.path) for r in records} == held  # the held-out images, no training image
    reference, scorer = spy.given[0]
    import torch

    expected = scorer.image_embeddings(load_reference_images(records))
    assert torch.allclose(reference, expected)  # what the trial's CLIP-I compares samples with

    [trial] = [t for t in study.trials if t.state.name == "COMPLETE"]
    attrs = trial.user_attrs
    for name in ("val_loss", "val_loss_ratio", "drift", "clip_i", "clip_t"):
        assert isinstance(attrs[name], float), name
    assert attrs["drift"] > 0 and attrs["clip_i_reference"] == "held-out"
    terms = attrs["objective_terms"]
    assert set(terms) == {"loss", "drift", "clip_i", "clip_t"}
    assert sum(terms.values()) == pytest.approx(trial.value)  # the terms are the value
    weights = study.user_attrs["space"]["objective"]
    assert terms["drift"] == pytest.approx(weights["drift"] * attrs["drift"])
    assert terms["clip_i"] == pytest.approx(-weights["clip_i"] * attrs["clip_i"])
    metrics = json.loads((cfg.out_dir() / "trials" / str(trial.number) / "metrics.json").read_text())
    assert metrics["schema_version"] == 4 and metrics["objective_terms"] == pytest.approx(terms)
    assert "drift" in study.user_attrs["objective"]


def test_pareto_over_loss_drift_and_clip_and_the_training_images_stand_in_with_a_note(
        example_dataset, tmp_path, probe_report, monkeypatch):
    from lrfind.study.runner import run_study

    spy = _ReferenceSpy(monkeypatch)
    # every folder below 7 images: nothing held out
    cfg = _config(example_dataset, tmp_path, probe_report, validation_min_images=7, pareto=True)
    outcome = run_study(cfg)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    assert study.user_attrs["clip_i_reference"] == "training"
    assert any("CLIP-I compares samples with the training images" in w for w in outcome.warnings)
    [records] = spy.records
    assert records and all("_lrf" in Path(r.path).parent.name for r in records)  # training folders' images
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE", "MAXIMIZE", "MAXIMIZE"]
    assert study.metric_names == ["loss_ratio", "drift", "clip_i", "clip_t"]
    [trial] = [t for t in study.trials if t.state.name == "COMPLETE"]
    attrs = trial.user_attrs
    assert trial.values == pytest.approx([attrs["val_loss_ratio"], attrs["drift"], attrs["clip_i"], attrs["clip_t"]])
    assert attrs["clip_i_reference"] == "training"


def test_metrics_files_of_version_2_still_read_without_the_terms():
    from lrfind.artifacts.trial_metrics import TrialMetrics

    old = TrialMetrics.from_dict({"schema_version": 2, "number": 4, "val_loss": 0.2, "drift": 0.01})
    assert old.drift == 0.01 and old.objective_terms is None and old.clip_i_reference is None
    assert "objective_terms" not in old.to_dict()  # written only when present
