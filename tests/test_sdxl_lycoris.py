"""LyCORIS (lycoris.kohya: LoHa, LoKr, LoCon) on SDXL: the modules, names and shapes lycoris' own
kohya wrapper builds on kohya's SDXL U-Net (from the sd-scripts mirror, on the meta device) and both
text encoders, kohya's SDXL key names in the file, `lrfind train` on tiny-sdxl with resume from
--network-weights, the file's metadata, sampling, and export-kohya for sdxl_train_network.py."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import tomllib

import pytest
import torch

from lrfind.network import NetworkSpec, attach_network
from lrfind.network.attach import SDXL_KEY_PREFIXES
from test_sdxl_network import _meta_sdxl, _with_text_model, kohya, kohya_unet  # noqa: F401 - fixtures


def lycoris_spec(args, dim=8, alpha=4.0, text_encoder=True) -> NetworkSpec:
    return NetworkSpec(dim, alpha, train_text_encoder=text_encoder, network_module="lycoris.kohya",
                       network_args=dict(args))


def kohya_lycoris_modules(text_encoders, unet, args: dict, dim=8, alpha=4.0) -> dict[str, dict]:
    """lycoris.kohya.create_network called as kohya's sdxl_train_network.py calls it (the two text
    encoders as a list, kohya's own U-Net): {lora_name: {tensor: shape}} in module order."""
    import lycoris.kohya as lycoris_kohya
    from lycoris.logging import logger

    cls, level = lycoris_kohya.LycorisNetworkKohya, logger.level
    class_state = {k: v for k, v in vars(cls).items() if k.isupper()}
    logger.setLevel(logging.ERROR)
    try:
        network = lycoris_kohya.create_network(1.0, dim, alpha, None, text_encoders, unet, **args)
    finally:
        for key, value in class_state.items():  # create_network leaves its preset on the class
            setattr(cls, key, value)
        logger.setLevel(level)
    return {_with_text_model(lora.lora_name): {k: tuple(v.shape) for k, v in lora.state_dict().items()}
            for lora in network.text_encoder_loras + network.unet_loras}


@pytest.fixture(scope="module")
def meta_sdxl():
    """SDXL base's diffusers U-Net and encoders on the meta device; every test detaches what it attaches."""
    return _meta_sdxl()


# preset attn-only names kohya's attention class (CrossAttention; diffusers': Attention)
@pytest.mark.parametrize("args", [{"algo": "loha"}, {"algo": "lokr", "factor": "8"},
                                  {"algo": "locon", "conv_dim": "4", "conv_alpha": "1"},
                                  {"algo": "lokr", "preset": "attn-only"}],
                         ids=["loha", "lokr", "locon", "lokr-attn-only"])
def test_modules_names_and_shapes_equal_lycoris_on_kohya_sdxl(meta_sdxl, kohya_unet, args):
    components = meta_sdxl
    theirs = kohya_lycoris_modules([components.text_encoder, components.text_encoder_2], kohya_unet, args)
    network = attach_network(components, lycoris_spec(args), seed=0)
    try:
        # lycoris' order: the text encoders' modules, then the U-Net's
        modules = [module for part in ("text_encoder", "text_encoder_2", "unet")
                   for module in network.lycoris_modules(part)]
        ours = {module.lora_name: {k: tuple(v.shape) for k, v in module.state_dict().items()} for module in modules}
        assert list(ours) == list(theirs)  # the same modules in kohya's module order
        assert ours == theirs
        assert sorted(network.module_names()) == sorted(ours)
    finally:
        network.detach()
    names = list(ours)
    assert all(name.startswith(SDXL_KEY_PREFIXES) for name in names)
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in names
    assert "lora_te2_text_model_encoder_layers_31_self_attn_out_proj" in names
    # kohya's SDXL U-Net has no TimestepEmbedding class and no conv_in / conv_out names: preset full
    # adapts the blocks only there (on SD 1.x it adds conv_in, conv_out and the time embedding)
    assert not [n for n in names if n.startswith(("lora_unet_time_embed", "lora_unet_label_emb",
                                                  "lora_unet_input_blocks_0_", "lora_unet_out_"))]
    if args.get("preset") is None:
        assert "lora_unet_input_blocks_1_0_in_layers_2" in names  # a resnet's 3x3 conv, kohya's name
        assert "lora_unet_input_blocks_3_0_op" in names and "lora_unet_output_blocks_2_2_conv" in names


def test_a_preset_naming_kohya_s_sdxl_paths_selects_them(meta_sdxl, kohya_unet, tmp_path):
    """Target names and exclusions are matched against kohya's SGM paths, as in kohya."""
    preset = tmp_path / "sgm.toml"
    preset.write_text('enable_conv = true\nunet_target_module = ["ResnetBlock2D"]\n'
                      'unet_target_name = ["time_embed.0", "label_emb.0.2", "out.2"]\n'
                      'exclude_name = ["output_blocks.*"]\nuse_fnmatch = true\n'
                      'text_encoder_target_module = []\n')
    args = {"algo": "loha", "preset": str(preset)}
    components = meta_sdxl
    theirs = kohya_lycoris_modules(None, kohya_unet, args)
    network = attach_network(components, lycoris_spec(args, text_encoder=False), seed=0)
    try:
        assert network.module_names() == list(theirs)
    finally:
        network.detach()
    assert {"lora_unet_time_embed_0", "lora_unet_label_emb_0_2", "lora_unet_out_2",
            "lora_unet_middle_block_2_emb_layers_1"} <= set(theirs)
    assert not [name for name in theirs if name.startswith("lora_unet_output_blocks_")]


@pytest.fixture(scope="module")
def tiny_sdxl():
    from lrfind.models.builtin import build_builtin

    return build_builtin("tiny-sdxl", 0)


def _as_array(image):
    import numpy as np

    return np.asarray(image).astype(np.int16)


@pytest.mark.parametrize("args", [{"algo": "lokr", "factor": 4}, {"algo": "loha"}], ids=["lokr", "loha"])
def test_the_file_s_sdxl_names_merge_into_the_layers_the_network_trained(tiny_sdxl, tmp_path, args):
    """Samples merge the file by its names (SGM U-Net paths, lora_te1_/lora_te2_) into lrfind's
    diffusers layers: they draw what the attached network draws, and detach leaves the model as it was."""
    from lrfind.network import generate_images, save_lora
    from lrfind.network.metadata import modelspec_metadata

    scratch = dataclasses.replace(tiny_sdxl, unet=copy.deepcopy(tiny_sdxl.unet),
                                  text_encoder=copy.deepcopy(tiny_sdxl.text_encoder),
                                  text_encoder_2=copy.deepcopy(tiny_sdxl.text_encoder_2), _fingerprints={})
    sample = dict(width=64, height=64, steps=3, guidance_scale=1.0)
    base = generate_images(tiny_sdxl, ["a cat"], [3], **sample)[0]
    network = attach_network(scratch, lycoris_spec(args, dim=4, alpha=2.0), seed=0)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in network.unet_parameters() + network.text_encoder_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    live = generate_images(scratch, ["a cat"], [3], **sample)[0]
    state_dict = network.kohya_state_dict()
    assert {name.split("_")[1] for name in state_dict} == {"unet", "te1", "te2"}
    metadata = modelspec_metadata(title="t", timestamp=0.0, resolution=64, model_family="sdxl")
    path = save_lora(tmp_path / "lycoris.safetensors", state_dict, metadata, "fp32")
    network.detach()
    merged = generate_images(tiny_sdxl, ["a cat"], [3], **sample, loras=[(path, 1.0)])[0]
    assert abs(_as_array(live) - _as_array(merged)).max() <= 1
    assert abs(_as_array(merged) - _as_array(base)).max() > 10
    assert abs(_as_array(generate_images(scratch, ["a cat"], [3], **sample)[0]) - _as_array(base)).max() == 0


BASE = ["--model", "tiny-sdxl", "--resolution", "64", "--network-dim", "4", "--network-alpha", "2",
        "--train-batch-size", "2", "--no-progress", "--save-precision", "float",
        "--network-module", "lycoris.kohya"]


def test_lrfind_train_lokr_on_tiny_sdxl_writes_kohya_sdxl_names_and_resumes(example_dataset, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from lrfind.cli import main

    first = tmp_path / "a"
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "2", "--output-dir", str(first),
                 "--output-name", "a", "--network-args", "algo=lokr", "factor=4"]) == 0
    with safe_open(str(first / "a.safetensors"), "pt") as handle:
        metadata, keys = handle.metadata(), list(handle.keys())
    names = {key.split(".")[0] for key in keys}
    assert all(name.startswith(SDXL_KEY_PREFIXES) for name in names)
    assert {name.split("_")[1] for name in names} == {"unet", "te1", "te2"}  # both encoders train by default
    assert any(key.endswith(".lokr_w1") for key in keys)
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lokr_w1" in keys
    assert metadata["ss_network_module"] == "lycoris.kohya"
    assert json.loads(metadata["ss_network_args"]) == {"algo": "lokr", "factor": "4", "dropout": None}
    assert metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    # kohya's train_network.py writes the LoRA architecture for every network module, LyCORIS's too
    assert metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    # lr 1e-30 moves nothing a float32 can show: the continued network is the file it started from
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(tmp_path / "b"),
                 "--output-name", "b", "--network-args", "algo=lokr", "factor=4", "--learning-rate", "1e-30",
                 "--network-weights", str(first / "a.safetensors")]) == 0
    a, b = load_file(str(first / "a.safetensors")), load_file(str(tmp_path / "b" / "b.safetensors"))
    assert a.keys() == b.keys() and all(float((a[k] - b[k]).abs().max()) < 1e-20 for k in a)
    assert any(float(a[k].abs().max()) > 0 for k in a if ".lokr_w2" in k)  # trained: not the zero init


def test_an_sdxl_lycoris_file_on_an_sd1_model_exits_2_with_one_line(example_dataset, tmp_path, capsys):
    from lrfind.cli import main

    first = tmp_path / "a"
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(first),
                 "--output-name", "a", "--network-args", "algo=loha", "--network-train-unet-only"]) == 0
    capsys.readouterr()
    sd1 = [*BASE[:BASE.index("--model")], "--model", "tiny", *BASE[BASE.index("--model") + 2:]]
    rc = main(["train", str(example_dataset), *sd1, "--max-train-steps", "1", "--output-dir", str(tmp_path / "b"),
               "--network-args", "algo=loha", "--network-weights", str(first / "a.safetensors")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "an SDXL LoRA, and --model is an SD 1.x model" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


@pytest.mark.parametrize("args", [{"algo": "lokr", "factor": 4}, {"algo": "loha"}], ids=["lokr", "loha"])
def test_export_of_an_sdxl_lycoris_study_is_sdxl_train_network_with_lycoris(tmp_path, monkeypatch, capsys, args):
    """kohya's SDXL U-Net has no TimestepEmbedding: preset full builds there as it is, so the export
    names lycoris.kohya with the study's args and writes no preset file (SD 1.x needs one)."""
    from lrfind.export.kohya_config import accelerate_command
    from lrfind.export.lycoris_preset import PRESET_FILE, kohya_preset_toml
    from test_export_kohya import kohya_flatten, make_recommendation, run_cli, write_study

    assert kohya_preset_toml("lycoris.kohya", args, "sdxl") is None
    assert kohya_preset_toml("lycoris.kohya", args, "sd1") is not None
    rec = make_recommendation(tmp_path, unet_only=True)
    rec = rec.model_copy(update={"train_values": {**rec.train_values, "network_module": "lycoris.kohya",
                                                  "network_args": args}})
    study = write_study(tmp_path, rec)
    probe = study / "probe.json"
    probe.write_text(probe.read_text().replace('"model": "tiny"', '"model": "tiny-sdxl"'))
    out = tmp_path / "export"
    assert run_cli(monkeypatch, ["export-kohya", "mychar", "--study-dir", str(study), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = (out / "kohya_config.toml").read_text()
    assert text.startswith("# kohya sd-scripts training config (sdxl_train_network.py --config_file)")
    config = kohya_flatten(tomllib.loads(text))
    assert config["network_module"] == "lycoris.kohya"
    assert sorted(config["network_args"]) == sorted(f"{k}={v}" for k, v in args.items())
    assert config["cache_text_encoder_outputs"] is True and not (out / PRESET_FILE).exists()
    command = accelerate_command(out / "kohya_config.toml", out / "kohya_dataset.toml", script="sdxl_train_network.py")
    assert command in printed and " train_network.py" not in printed


def test_the_probe_trains_a_loha_on_tiny_sdxl(example_dataset, tmp_path):
    from lrfind.cli import main

    out = tmp_path / "probe"
    assert main(["probe", str(example_dataset), "--model", "tiny-sdxl", "--resolution", "64", "--steps", "8",
                 "--batch-size", "2", "--network-module", "lycoris.kohya", "--network-args", "algo=loha",
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "probe.json").read_text())
    assert report["network_module"] == "lycoris.kohya" and report["network_args"] == {"algo": "loha"}
