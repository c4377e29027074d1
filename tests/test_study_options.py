"""`lrfind study` takes lrfind train's run-wide options (issue 18 part 1): they reach every trial's
training config, the recommendation, export-kohya and `lrfind train --from-study`; an option the
space searches is refused with the space key to change."""

from __future__ import annotations

import json
import shutil

import optuna
import pytest

from lrfind.cli import main
from lrfind.errors import ConfigError
from lrfind.study.overrides import with_train_options
from lrfind.study.space import load_space

GIVEN = {"resolution": 64, "train_batch_size": 2, "clip_skip": 2, "max_token_length": 150, "noise_offset": 0.05,
         "flip_aug": True, "shuffle_caption": True, "keep_tokens": 1, "network_train_unet_only": False,
         "min_snr_gamma": 5.0, "min_bucket_reso": 64, "max_bucket_reso": 128, "gradient_checkpointing": True}
FLAGS = ["--resolution", "64", "--batch-size", "2", "--clip_skip", "2", "--max-token-length", "150",
         "--noise-offset", "0.05", "--flip-aug", "--shuffle_caption", "--keep-tokens", "1",
         "--no-network-train-unet-only", "--min-snr-gamma", "5", "--min-bucket-reso", "64", "--gradient-checkpointing"]


@pytest.fixture(scope="module")
def probe_report(example_dataset, tmp_path_factory, tiny, feature_store):
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.probe import run_probe

    out = tmp_path_factory.mktemp("probe")
    run_probe(ProbeConfig(dataset={"train_dir": example_dataset, "resolution": 64, "batch_size": 2}, steps=24, out=out,
                          progress=False),
              components=tiny, store=feature_store)
    return out / "probe.json"


def test_run_options_reach_every_trial_the_recommendation_export_and_the_final_run(
        example_dataset, tmp_path, probe_report, capsys):
    from lrfind.final.from_study import from_study_values
    from lrfind.report.sections.recommendation import _settings_rows
    from lrfind.training.config import TrainConfig
    from lrfind.training.kohya_names import train_config

    out = tmp_path / "studies" / "opts"
    out.mkdir(parents=True)
    shutil.copy(probe_report, out / "probe.json")
    config = tmp_path / "study.toml"  # --config takes the same keys; the command line wins
    config.write_text("max_bucket_reso = 128\nclip_skip = 1\nn_trials = 2\n")
    rc = main(["study", str(example_dataset), "--name", "opts", "--space", "tiny", "--out", str(out),
               "--config", str(config), "--trial-budget", "6", "--score", "loss", "--no-progress", *FLAGS])
    assert rc == 0, capsys.readouterr().err
    storage = f"sqlite:///{tmp_path / 'studies' / 'opts.db'}"
    study = optuna.load_study(study_name="opts", storage=storage)
    trained = [t for t in study.get_trials() if "train_values" in t.user_attrs]
    assert len(trained) >= 1
    for trial in trained:  # each is the TrainConfig the trial trained with (objective._train)
        values = trial.user_attrs["train_values"]
        assert {k: values[k] for k in GIVEN} == GIVEN
        train_config(dict(train_data_dir=example_dataset, **values))
    rec = json.loads((out / "recommendation.json").read_text())
    assert {k: rec["train_values"][k] for k in GIVEN} == GIVEN
    rows = dict(_settings_rows(rec))  # the report's settings table
    assert rows["clip_skip"] == "2" and rows["max_token_length"] == "150" and rows["flip_aug"] == "True"
    final = from_study_values("opts", out)
    assert {k: final[k] for k in GIVEN} == GIVEN
    assert main(["export-kohya", "opts", "--study-dir", str(out), "--out", str(tmp_path / "kohya")]) == 0
    training = (tmp_path / "kohya" / "kohya_config.toml").read_text()
    dataset = (tmp_path / "kohya" / "kohya_dataset.toml").read_text()
    assert "clip_skip = 2" in training and "max_token_length = 150" in training and "noise_offset = 0.05" in training
    assert "flip_aug = true" in dataset and "max_bucket_reso = 128" in dataset


def test_an_option_the_space_searches_is_refused_naming_the_space_key(example_dataset, tmp_path, capsys):
    rc = main(["study", str(example_dataset), "--name", "x", "--space", "tiny", "--out", str(tmp_path / "x"),
               "--network-dim", "16"])
    err = capsys.readouterr().err
    assert rc == 2 and "--network-dim 16" in err and "searches network_dim" in err and "--space" in err
    assert "Traceback" not in err
    with pytest.raises(ConfigError, match="searches optimizer"):
        with_train_options(load_space("tiny"), {"optimizer_type": "Prodigy"}, "tiny")


def test_an_option_the_space_fixes_replaces_it_and_fixed_keys_take_train_names(tmp_path):
    space_file = tmp_path / "space.toml"
    space_file.write_text('network_dim = 8\nnetwork_alpha_fraction = 0.5\nepochs = [1, 2]\n'
                          '[fixed]\nresolution = 64\nclip_skip = 2\nenable_bucket = false\n')
    space = load_space(space_file)
    assert space.fixed.clip_skip == 2 and space.fixed.train_values()["enable_bucket"] is False
    changed = with_train_options(space, {"network_dim": 4, "network_alpha": 2.0, "resolution": 128}, str(space_file))
    assert changed.network_dim.choices == [4] and changed.network_alpha_fraction.choices == [0.5]
    assert changed.fixed.resolution == 128 and changed.fixed.clip_skip == 2  # unset options keep the space's
    with pytest.raises(ConfigError, match="above --network-dim"):
        with_train_options(space, {"network_alpha": 16.0}, str(space_file))
    with pytest.raises(ConfigError, match="searches epochs"):
        with_train_options(space, {"max_train_epochs": 3}, str(space_file))


def test_the_flat_flags_and_toml_keys_reach_the_nested_dataset_and_model_parts(example_dataset, tmp_path):
    from lrfind.cli import build_parser
    from lrfind.cli.flat_names import flat_names
    from lrfind.cli.study_cmd import STUDY_NAMES, study_values
    from lrfind.config import build
    from lrfind.study.config import StudyConfig

    config = tmp_path / "study.toml"
    config.write_text('caption_extension = "caption"\nallow_pickle = true\n[run]\nnoise_offset = 0.05\n')
    args = build_parser().parse_args(["study", str(example_dataset), "--name", "x", "--config", str(config),
                                      "--model", "tiny-sdxl", "--n-trials", "3"])
    cfg = build(StudyConfig, str(config), flat_names(STUDY_NAMES), **study_values(args))
    assert (cfg.dataset.train_dir, cfg.dataset.caption_extension) == (example_dataset, ".caption")
    assert (cfg.model.model, cfg.model.allow_pickle, cfg.n_trials, cfg.run.noise_offset) == ("tiny-sdxl", True, 3, 0.05)


@pytest.mark.parametrize("flags, needle", [
    (["--caption-extension", " "], "caption_extension: caption extension must not be empty"),
    (["--caption_extension", ".txt", "--n-trials", "0"], "n_trials:"),
])
def test_a_bad_option_exits_2_named_as_the_flag(flags, needle, example_dataset, tmp_path, capsys):
    out = tmp_path / "x"
    rc = main(["study", str(example_dataset), "--name", "x", "--space", "tiny", "--out", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not out.exists()
