"""The optional DINO term (issue 17, item 3): a local DINO/DINOv2 folder loads offline, embeds the
CLS token, is refused in one line when it is no DINO model, and on a tiny study scores the trial's
own samples against the held-out images, enters the objective with its weight and --pareto as
an objective of its own."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import optuna
import pytest
from PIL import Image

from lrfind.errors import ModelError
from test_objective_study import _config, _held_out_paths
from test_study_options import probe_report  # noqa: F401 - the fixture: a probe of the example on tiny

TINY_VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}


@pytest.fixture(scope="module")
def dinov2_folder(tmp_path_factory) -> Path:
    """A tiny random Dinov2Model saved as a local model folder (no preprocessor config)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("dinov2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Dinov2Model(Dinov2Config(**TINY_VIT, mlp_ratio=2)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory) -> Path:
    """A tiny random DINO-style ViTModel (no pooler) with a ViT preprocessor config."""
    import torch
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    folder = tmp_path_factory.mktemp("dino_vit")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        ViTModel(ViTConfig(**TINY_VIT, intermediate_size=64), add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _photos(count: int = 3) -> list[Image.Image]:
    from dataset_photos import photo

    return [photo(name).resize((48, 40)) for name in ("astronaut", "chelsea", "coffee", "rocket")[:count]]


def test_dinov2_embeds_the_cls_token_unit_length_and_deterministically(dinov2_folder):
    import torch

    from lrfind.scoring.dino import load_dino_scorer

    scorer = load_dino_scorer(dinov2_folder)
    photos = _photos()
    embeddings = scorer.image_embeddings(photos)
    assert embeddings.shape == (3, 32)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(embeddings, load_dino_scorer(dinov2_folder).image_embeddings(photos))  # loaded again
    pixels = scorer.image_processor(images=photos, return_tensors="pt")["pixel_values"]
    assert pixels.shape[-2:] == (32, 32)  # DINO's transform at the model's image size
    with torch.no_grad():
        pooled = scorer.model(pixel_values=pixels).pooler_output  # Dinov2's pooler: the layer-normed CLS token
    assert torch.allclose(embeddings, torch.nn.functional.normalize(pooled, dim=-1), atol=1e-5)


def test_vit_loads_without_a_pooler_and_uses_its_own_preprocessing(vit_folder):
    import torch

    from lrfind.scoring.dino import dino_similarity, load_dino_scorer

    scorer = load_dino_scorer(vit_folder)
    assert type(scorer.image_processor).__name__ == "ViTImageProcessorPil"
    assert scorer.model.pooler is None
    photos = _photos(2)
    same = scorer.image_embeddings(photos)
    assert dino_similarity(same, same) <= 1.0 + 1e-6
    assert dino_similarity(same[:1], same[:1]) == pytest.approx(1.0, abs=1e-5)  # an image with itself
    expected = float((same @ same.T).mean())
    assert dino_similarity(same, same) == pytest.approx(expected)
    assert not torch.equal(same[0], same[1])


def test_an_old_feature_extractor_config_is_read_and_an_unknown_one_refused(vit_folder, tmp_path):
    import shutil

    from lrfind.scoring.dino import load_dino_scorer

    folder = Path(shutil.copytree(vit_folder, tmp_path / "old"))
    (folder / "preprocessor_config.json").write_text(json.dumps({  # as facebook/dino-vits16 has it
        "feature_extractor_type": "ViTFeatureExtractor", "do_resize": True, "size": 24, "resample": 2,
        "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))
    scorer = load_dino_scorer(folder)
    pixels = scorer.image_processor(images=_photos(1), return_tensors="pt")["pixel_values"]
    assert pixels.shape[-2:] == (24, 24)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "CLIPImageProcessor"}))
    with pytest.raises(ModelError, match="'CLIPImageProcessor' is not a DINO/ViT preprocessing"):
        load_dino_scorer(folder)


def _clip_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize("make, words", [
    (lambda tmp: tmp / "missing", "no such folder"),
    (lambda tmp: tmp, "no config.json"),
    (_clip_folder, "describes a 'clip' model, not a DINO/ViT image model"),
    (lambda tmp: (tmp / "config.json").write_text('{"model_type": "dinov2"}') and tmp, "no weights"),
    (lambda tmp: (tmp / "config.json").write_text("{nope") and tmp, "not a valid JSON config"),
])
def test_bad_dino_folders_are_one_line_model_errors(tmp_path, make, words):
    from lrfind.scoring.dino import check_dino_folder, load_dino_scorer

    folder = make(tmp_path)
    for check in (check_dino_folder, load_dino_scorer):
        with pytest.raises(ModelError) as caught:
            check(folder)
        assert words in str(caught.value) and "\n" not in str(caught.value)


def test_bad_dino_folder_exits_2_before_the_study_opens_its_database(example_dataset, tmp_path, capsys):
    from lrfind.cli import main

    out = tmp_path / "studies" / "bad"
    rc = main(["study", str(example_dataset), "--name", "bad", "--space", "tiny", "--out", str(out),
               "--dino", str(_clip_folder(tmp_path))])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--dino" in err and "not a DINO/ViT image model" in err
    assert not (tmp_path / "studies" / "bad.db").exists() and not (out / "trials").exists()


class _DinoSpy:
    """The images each trial's DINO term embeds, and the reference embeddings it compares them with."""

    def __init__(self, monkeypatch):
        import lrfind.study.objective as objective

        self.calls: list = []
        real = objective.dino_similarity

        def spy(samples, reference):
            value = real(samples, reference)
            self.calls.append((samples, reference, value))
            return value

        monkeypatch.setattr(objective, "dino_similarity", spy)


def _trial_sample_images(cfg, trial) -> list[Image.Image]:
    return [Image.open(cfg.out_dir() / path) for path in trial.user_attrs["samples"]]


def test_dino_scores_the_trials_samples_against_the_held_out_images_and_enters_the_objective(
        example_dataset, tmp_path, probe_report, monkeypatch, dinov2_folder):
    import torch

    from lrfind.scoring.dino import load_dino_scorer
    from lrfind.scoring.samples import load_reference_images
    from lrfind.study.runner import run_study
    from test_objective_study import _ReferenceSpy

    references, dino = _ReferenceSpy(monkeypatch), _DinoSpy(monkeypatch)
    cfg = _config(example_dataset, tmp_path, probe_report, dino=dinov2_folder)
    run_study(cfg)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    [trial] = [t for t in study.trials if t.state.name == "COMPLETE"]
    attrs = trial.user_attrs
    assert isinstance(attrs["dino"], float) and -1 <= attrs["dino"] <= 1
    # the reference: the held-out images, embedded once by DINO; the samples: the trial's own, as saved
    [records] = references.records
    assert {Path(r.path) for r in records} == _held_out_paths(study, example_dataset)
    scorer = load_dino_scorer(dinov2_folder)
    [(samples, reference, value)] = dino.calls
    assert torch.allclose(reference, scorer.image_embeddings(load_reference_images(records)), atol=1e-6)
    assert torch.allclose(samples, scorer.image_embeddings(_trial_sample_images(cfg, trial)), atol=1e-6)
    assert value == attrs["dino"]
    # the term: weighted, signed, part of the value; recorded with the others
    weight = study.user_attrs["space"]["objective"]["dino"]
    terms = attrs["objective_terms"]
    assert set(terms) == {"loss", "drift", "clip_i", "clip_t", "dino"}
    assert terms["dino"] == pytest.approx(-weight * attrs["dino"]) and weight > 0
    assert sum(terms.values()) == pytest.approx(trial.value)
    assert "DINO" in study.user_attrs["objective"] and study.user_attrs["dino_model"] == dinov2_folder.name
    metrics = json.loads((cfg.out_dir() / "trials" / str(trial.number) / "metrics.json").read_text())
    assert metrics["schema_version"] == 4 and metrics["dino"] == attrs["dino"]
    # deterministic: the same study again gives the same DINO score
    again = _config(example_dataset, tmp_path / "again", probe_report, dino=dinov2_folder)
    run_study(again)
    [twin] = [t for t in optuna.load_study(study_name=again.name, storage=again.storage_url()).trials
              if t.state.name == "COMPLETE"]
    assert twin.user_attrs["dino"] == attrs["dino"]


def _space_without_clip(tmp_path: Path) -> Path:
    """The tiny preset with CLIP weights 0: samples are drawn for DINO alone."""
    text = resources.files("lrfind.study.presets").joinpath("tiny.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^clip_i = .*$", "clip_i = 0.0", text)
    text = re.sub(r"(?m)^clip_t = .*$", "clip_t = 0.0", text)
    path = tmp_path / "no-clip.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_pareto_gets_a_dino_objective_and_dino_alone_draws_samples(
        example_dataset, tmp_path, probe_report, vit_folder):
    from lrfind.study.runner import run_study

    cfg = _config(example_dataset, tmp_path, probe_report, dino=vit_folder, pareto=True,
                  space=str(_space_without_clip(tmp_path)))
    run_study(cfg)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    assert study.metric_names == ["loss_ratio", "drift", "dino"]
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE", "MAXIMIZE"]
    [trial] = [t for t in study.trials if t.state.name == "COMPLETE"]
    attrs = trial.user_attrs
    assert attrs["clip_i"] is None and len(attrs["samples"]) == len(attrs["sample_prompts"]) > 0
    assert trial.values == pytest.approx([attrs["val_loss_ratio"], attrs["drift"], attrs["dino"]])


def test_a_study_resumed_with_dino_added_or_dropped_is_refused():
    from lrfind.errors import LrfindError
    from lrfind.study.config import StudyConfig
    from lrfind.study.sample_scorers import check_same_dino

    cfg = StudyConfig(dataset={"train_dir": Path("d")}, name="n")
    study = optuna.create_study()
    study.set_user_attr("dino_model", None)
    check_same_dino(cfg.model_copy(update={"dino": Path("m")}), study)  # no trial yet: anything goes
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    check_same_dino(cfg, study)
    with pytest.raises(LrfindError, match="was run without --dino"):
        check_same_dino(cfg.model_copy(update={"dino": Path("m")}), study)
    study.set_user_attr("dino_model", "dinov2-small")
    check_same_dino(cfg.model_copy(update={"dino": Path("other")}), study)
    with pytest.raises(LrfindError, match=r"was run with --dino \(dinov2-small\)"):
        check_same_dino(cfg, study)
    older = optuna.create_study()  # a study from before --dino: no attribute, nothing to compare
    older.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    check_same_dino(cfg.model_copy(update={"dino": Path("m")}), older)


def test_without_dino_the_weight_has_no_effect_and_old_metrics_read():
    from lrfind.artifacts.trial_metrics import TrialMetrics
    from lrfind.study.config import StudyConfig
    from lrfind.study.sample_scorers import objective_weights
    from lrfind.study.space import load_space

    space = load_space("character")
    assert space.objective.dino == 1.0
    cfg = StudyConfig(dataset={"train_dir": Path("d")}, name="n")
    assert objective_weights(cfg, space).dino == 0
    assert objective_weights(cfg.model_copy(update={"dino": Path("m")}), space).dino == 1.0
    assert objective_weights(cfg.model_copy(update={"dino": Path("m"), "score": "loss"}), space).dino == 0
    old = TrialMetrics.from_dict({"schema_version": 3, "number": 1, "val_loss": 0.2,
                                  "objective_terms": {"loss": 1.0, "drift": 0.0, "clip_i": 0.0, "clip_t": 0.0}})
    assert old.dino is None and "dino" not in old.to_dict()
