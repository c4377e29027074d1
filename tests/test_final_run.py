"""Final runs: resume equivalence, saved epochs and names, samples, X/Y grid, suggested epoch, --from-study."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import train_config


def final_config(dataset, out, **overrides) -> TrainConfig:
    values = dict(train_data_dir=dataset, resolution=64, max_train_epochs=3, train_batch_size=2,
                  network_dim=4, network_alpha=2, learning_rate=2e-3, network_train_unet_only=True,
                  save_every_n_epochs=1, sample_every_n_epochs=2, sample_steps=4, output_dir=out,
                  output_name="cat", save_precision="float", progress=False, seed=7)
    values.update(overrides)
    return train_config(values)


class StopAt:
    """Interrupt the run (as Ctrl-C would) once `step` optimizer steps are done."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def uninterrupted(example_dataset, tmp_path_factory, tiny, feature_store):
    from lrfind.final.run import train_lora

    out = tmp_path_factory.mktemp("whole")
    return train_lora(final_config(example_dataset, out), components=tiny, store=feature_store), out


def test_saved_epochs_samples_grid_and_suggestion(uninterrupted):
    result, out = uninterrupted
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["cat-000001.safetensors", "cat-000002.safetensors",
                                                                  "cat.safetensors"]
    assert [p.name for p in result.saved] == ["cat-000001.safetensors", "cat-000002.safetensors", "cat.safetensors"]
    # samples at epoch 2 (every 2) and at the last epoch, 4 prompts each, kohya's naming
    names = sorted(p.name for p in (out / "sample").glob("*.png"))
    assert names == [f"cat_e{e:06d}_{i:02d}.png" for e in (2, 3) for i in range(4)]
    final = json.loads((out / "cat_final.json").read_text())
    assert [row["epoch"] for row in final["epochs"]] == [1, 2, 3]
    assert all(row["val_loss"] > 0 for row in final["epochs"])
    assert [row["clip_i"] is None for row in final["epochs"]] == [True, False, False]  # tiny CLIP where sampled
    assert final["clip_calibrated"] is False
    assert final["suggested_file"] == {1: "cat-000001.safetensors", 2: "cat-000002.safetensors",
                                       3: "cat.safetensors"}[final["suggested_epoch"]]
    assert final["reason"].startswith(f"epoch {final['suggested_epoch']}")
    from PIL import Image

    grid = Image.open(out / final["xy_grid"])
    assert grid.width > 4 * 64 and grid.height > 2 * 3 * 64  # 4 weights x (2 prompts x 3 epochs)
    states = list(out.glob("cat-*-state"))
    assert [p.name for p in states] == ["cat-000003-state"]  # only the newest state is kept


def test_interrupted_then_resumed_run_ends_with_the_same_weights(uninterrupted, example_dataset, tmp_path,
                                                                 tiny, feature_store):
    from lrfind.final.run import train_lora

    whole, whole_out = uninterrupted
    config = final_config(example_dataset, tmp_path)
    per_epoch = whole.state.steps_per_epoch
    with pytest.raises(KeyboardInterrupt):
        train_lora(config, components=tiny, store=feature_store, callbacks=[StopAt(2 * per_epoch + 3)])
    assert not (tmp_path / "cat.safetensors").exists()
    assert [p.name for p in tmp_path.glob("cat-*-state")] == ["cat-000002-state"]
    resumed = train_lora(config.model_copy(update={"resume": "last"}), components=tiny, store=feature_store)
    assert resumed.resumed_from.name == "cat-000002-state"
    assert resumed.state.step == whole.state.step and resumed.state.val_history == whole.state.val_history
    a, b = load_file(whole_out / "cat.safetensors"), load_file(tmp_path / "cat.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() <= 1e-6, key
    final = json.loads((tmp_path / "cat_final.json").read_text())
    assert [row["epoch"] for row in final["epochs"]] == [1, 2, 3]  # epochs before the interruption kept


def test_resume_with_other_settings_or_without_state_is_refused(example_dataset, tmp_path, tiny, feature_store):
    from lrfind.errors import ConfigError
    from lrfind.final.run import train_lora

    config = final_config(example_dataset, tmp_path, max_train_epochs=2, sample_every_n_epochs=None)
    with pytest.raises(ConfigError, match="no saved state"):
        train_lora(config.model_copy(update={"resume": "last"}), components=tiny, store=feature_store)
    with pytest.raises(KeyboardInterrupt):
        train_lora(config, components=tiny, store=feature_store, callbacks=[StopAt(40)])
    other = config.model_copy(update={"resume": "last", "network": config.network.model_copy(update={"alpha": 4.0})})
    with pytest.raises(ConfigError, match="network_alpha"):
        train_lora(other, components=tiny, store=feature_store)


def test_sample_prompt_file_reads_kohya_lines(tmp_path):
    from lrfind.errors import ConfigError
    from lrfind.final.epochs import read_sample_prompts

    path = tmp_path / "prompts.txt"
    path.write_text("# comment\nlrfcat on a sofa --n blurry --d 99\n\nlrfcup, still life --s 30\n", encoding="utf-8")
    assert read_sample_prompts(path) == [("lrfcat on a sofa", 99), ("lrfcup, still life", 1235)]
    path.write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no prompt"):
        read_sample_prompts(path)


def write_recommendation(study_dir, dataset_name="example"):
    from lrfind.artifacts.probe_report import ProbeReport, ProbeSource
    from lrfind.artifacts.recommendation import Closeness, ConceptRepeat, Recommendation

    study_dir.mkdir(parents=True)
    train_values = {
        "resolution": 64, "train_batch_size": 2, "network_dim": 4, "network_alpha": 2.0,
        "network_train_unet_only": True, "optimizer_type": "AdamW", "optimizer_args": {"weight_decay": 0.01},
        "learning_rate": 0.002, "unet_lr": 0.002, "text_encoder_lr": None, "lr_scheduler": "cosine",
        "lr_warmup_steps": 0, "min_snr_gamma": 5.0, "noise_offset": 0.0, "max_train_steps": None,
        "max_train_epochs": 2}
    rec = Recommendation(
        trial_number=3, value=0.9, direction="minimize", params={}, network_dim=4, network_alpha=2.0, epochs=2,
        optimizer="AdamW", optimizer_args={"weight_decay": 0.01}, unet_lr=0.002, lr_scheduler="cosine",
        total_steps=12, steps_math="", trial_steps=12, budget_scale=1.0, train_values=train_values,
        closeness=Closeness(completed=1, pruned=0, failed=0), confidence="low",
        concept_repeats=[ConceptRepeat(folder="10_lrfcat cat", concept="lrfcat cat", repeats=2, folder_name="2_lrfcat cat"),
                         ConceptRepeat(folder="5_lrfcup cup", concept="lrfcup cup", repeats=1, folder_name="1_lrfcup cup")])
    (study_dir / "recommendation.json").write_text(rec.to_json(), encoding="utf-8")
    probe = ProbeReport(source=ProbeSource(model="tiny", dataset="x"))
    (study_dir / "probe.json").write_text(probe.to_json(), encoding="utf-8")


def test_train_from_study_uses_the_recommendation(example_dataset, tmp_path, capsys):
    from lrfind.cli import main
    from lrfind.network import load_lora

    study = tmp_path / "studies" / "cats"
    write_recommendation(study)
    rc = main(["train", str(example_dataset), "--from-study", "cats", "--study-dir", str(study),
               "--sample-steps", "3", "--xy-grid-weights", "0.5", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    final = study / "final"
    assert (final / "cats-000001.safetensors").is_file() and (final / "cats.safetensors").is_file()
    _, metadata = load_lora(final / "cats.safetensors")
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_alpha"] == "2.0"
    assert metadata["ss_lr_scheduler"] == "cosine" and metadata["ss_epoch"] == "2"
    # repeats from the recommendation (2 and 1), not the folders' 10 and 5: (6x2 + 2x1) / batch 2 = 7 a epoch
    assert metadata["ss_steps"] == "14"
    assert (final / "cats_xy_grid.png").is_file() and "suggested epoch" in out
    assert list((final / "logs").rglob("events.out.tfevents.*"))


def test_from_study_without_recommendation_is_one_clear_error(example_dataset, tmp_path, capsys):
    from lrfind.cli import main

    rc = main(["train", str(example_dataset), "--from-study", "nope", "--study-dir", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and "recommendation.json" in err and "lrfind study" in err and "Traceback" not in err


def test_unknown_concept_folder_in_repeats_is_refused(example_dataset, tmp_path, capsys):
    from lrfind.cli import main

    rc = main(["train", str(example_dataset), "--resolution", "64", "--max-train-steps", "2",
               "--concept-repeats", "3_nothere=2", "--output-dir", str(tmp_path)])
    assert rc == 2 and "3_nothere" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_ctrl_c_during_train_says_how_to_resume(example_dataset, tmp_path, capsys, monkeypatch):
    from lrfind import api
    from lrfind.cli import main

    def interrupted(config, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train", interrupted)
    rc = main(["train", str(example_dataset), "--resolution", "64", "--max-train-epochs", "1",
               "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 130 and "--resume" in err and str(tmp_path) in err
