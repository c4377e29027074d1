"""SDXL in the study's presets and in export-kohya: `--space character` on an SDXL model reads the
SDXL preset, and the exported config is for kohya's sdxl_train_network.py with its options."""

from __future__ import annotations

import tomllib

import pytest

from lrfind.export.kohya_config import accelerate_command, kohya_training_values
from lrfind.models.families import family_named
from lrfind.study.space import family_preset, load_space, preset_names
from test_export_kohya import (KOHYA_TRAIN_NETWORK_OPTIONS, has_kohya_type, kohya_flatten, make_recommendation,
                               run_cli, write_study, write_training)

# sdxl_train_network.py's options beyond train_network.py's (library/sdxl_train_util.py
# add_sdxl_training_arguments at kohya-ss/sd-scripts 48d368fa)
KOHYA_SDXL_OPTIONS = {**KOHYA_TRAIN_NETWORK_OPTIONS, "cache_text_encoder_outputs": "bool",
                      "cache_text_encoder_outputs_to_disk": "bool", "disable_mmap_load_safetensors": "bool"}


@pytest.mark.parametrize("name, family, expected", [
    ("character", "sdxl", "sdxl-character"),
    ("style", "sdxl", "sdxl-style"),
    ("concept", "sdxl", "sdxl-concept"),
    ("tiny", "sdxl", "sdxl-tiny"),       # tiny-sdxl's: 64 px
    ("character", "sd1", "character"),
    ("character", None, "character"),    # family unknown (a pickle): the preset as named
])
def test_a_preset_name_means_the_family_s_own_preset(name, family, expected):
    assert family_preset(name, family) == expected


def test_the_sdxl_presets_train_at_1024_the_unet_with_checkpointing():
    for name in ("character", "concept", "style"):
        space = load_space(name, "sdxl")
        assert f"sdxl-{name}" in preset_names()
        assert space.description.startswith("SDXL ")
        fixed = space.fixed
        assert fixed.resolution == 1024 and fixed.network_train_unet_only and fixed.gradient_checkpointing
        # the SD 1.x preset's LyCORIS type (character: LoKr, concept: LoHa) is the SDXL one's too
        assert set(load_space(name).network_type.choices) <= set(space.network_type.choices)
        assert load_space(name).fixed.resolution == 512  # SD 1.x keeps its own


@pytest.mark.parametrize("unet_only", [True, False])
def test_sdxl_training_values_are_sdxl_train_network_options(tmp_path, unet_only):
    rec = make_recommendation(tmp_path, "AdamW", "cosine", unet_only)
    flat = kohya_flatten(write_training(rec, tmp_path, family=family_named("sdxl")))
    unknown = sorted(set(flat) - set(KOHYA_SDXL_OPTIONS))
    assert not unknown, f"not kohya sdxl_train_network.py options: {unknown}"
    assert all(has_kohya_type(v, KOHYA_SDXL_OPTIONS[k]) for k, v in flat.items())
    assert "clip_skip" not in flat  # kohya: "clip_skip will be unexpected" on SDXL
    assert flat["no_half_vae"] is True
    # kohya asserts the text encoders do not train when their outputs are cached
    assert flat.get("cache_text_encoder_outputs", False) is unet_only
    sd1 = kohya_training_values(rec, model_path="m", dataset_dir=None, output_dir="o", output_name="n",
                                logging_dir=None)
    assert "clip_skip" in sd1 and "no_half_vae" not in sd1 and "cache_text_encoder_outputs" not in sd1


def test_export_of_an_sdxl_study_writes_the_sdxl_script_s_command(tmp_path, monkeypatch, capsys):
    rec = make_recommendation(tmp_path, "AdamW", "cosine", True)
    study = write_study(tmp_path, rec)
    probe = study / "probe.json"
    probe.write_text(probe.read_text().replace('"model": "tiny"', '"model": "tiny-sdxl"'))
    out = tmp_path / "export"
    assert run_cli(monkeypatch, ["export-kohya", "mychar", "--study-dir", str(study), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = (out / "kohya_config.toml").read_text()
    assert text.startswith("# kohya sd-scripts training config (sdxl_train_network.py --config_file)")
    config = kohya_flatten(tomllib.loads(text))
    assert config["no_half_vae"] is True and config["cache_text_encoder_outputs"] is True
    command = accelerate_command(out / "kohya_config.toml", out / "kohya_dataset.toml", script="sdxl_train_network.py")
    assert command in printed and " train_network.py" not in printed
