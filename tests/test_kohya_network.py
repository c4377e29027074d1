"""kohya's networks.lora in lrfind: module set by kohya's rule, LoCon, dropouts, LoRA+, files.

The expected module lists are derived here from kohya's rule as kohya's `create_modules` states it
(class names of the diffusers modules, children that are Linear / Conv2d), independently of
lrfind.network.lora, then compared name by name and shape by shape with what lrfind attaches.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import types

import numpy as np
import pytest
import torch

from lrfind.cli import main
from lrfind.errors import ConfigError
from lrfind.network import NetworkSpec, applied_loras, attach_network, build_pipeline, generate_images, save_lora
from lrfind.network.model_hash import sd_model_hashes

SAMPLE = dict(width=64, height=64, steps=4, guidance_scale=5.0)
BASE = ["--model", "tiny", "--resolution", "64", "--network-dim", "4", "--network-alpha", "2",
        "--train-batch-size", "4", "--no-progress"]


def private_copy(tiny):
    return dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                               text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={})


@pytest.fixture()
def model(tiny):
    return private_copy(tiny)


def kohya_rule(components, dim, alpha, conv_dim=None, conv_alpha=None):
    """{kohya name: (down shape, up shape, alpha)} by kohya's rule, written out from its text."""
    expected = {}
    unet_classes = {"Transformer2DModel"} | ({"ResnetBlock2D", "Downsample2D", "Upsample2D"} if conv_dim else set())
    for prefix, root, classes in (("lora_unet", components.unet, unet_classes),
                                  ("lora_te", components.text_encoder, {"CLIPAttention", "CLIPMLP"})):
        for name, module in root.named_modules():
            if type(module).__name__ not in classes:
                continue
            for child_name, child in module.named_modules():
                path = f"{name}.{child_name}"
                if prefix == "lora_te" and not path.startswith("text_model."):
                    path = "text_model." + path  # kohya's CLIPTextModel has that level
                key = f"{prefix}.{path}".replace(".", "_")
                if type(child).__name__ == "Linear":
                    expected[key] = ((dim, child.in_features), (child.out_features, dim), alpha)
                elif type(child).__name__ == "Conv2d" and child.kernel_size == (1, 1):
                    expected[key] = ((dim, child.in_channels, 1, 1), (child.out_channels, dim, 1, 1), alpha)
                elif type(child).__name__ == "Conv2d" and conv_dim:
                    expected[key] = ((conv_dim, child.in_channels, *child.kernel_size),
                                     (child.out_channels, conv_dim, 1, 1), conv_alpha)
    return expected


def attached_layout(network):
    state_dict = network.kohya_state_dict()
    names = [k[: -len(".lora_down.weight")] for k in state_dict if k.endswith(".lora_down.weight")]
    return {n: (tuple(state_dict[n + ".lora_down.weight"].shape), tuple(state_dict[n + ".lora_up.weight"].shape),
                float(state_dict[n + ".alpha"])) for n in names}


@pytest.mark.parametrize("args, conv", [({}, None), ({"conv_dim": 4, "conv_alpha": 2}, (4, 2.0)),
                                        ({"conv_dim": 2}, (2, 1.0))])  # no conv_alpha: kohya's 1.0
def test_module_list_equals_kohyas_rule(model, args, conv):
    network = attach_network(model, NetworkSpec(8, 4.0, train_text_encoder=True, network_args=args), seed=0)
    got = attached_layout(network)
    network.detach()
    want = kohya_rule(model, 8, 4.0, *(conv or (None, None)))
    assert list(got) == [n for n in want if n.startswith("lora_unet")] + [n for n in want if n.startswith("lora_te")]
    assert got == want
    unet_names = [n for n in got if n.startswith("lora_unet")]
    assert len(unet_names) == (72 if conv is None else 72 + 45) and len(got) - len(unet_names) == 30
    assert not [n for n in got if re.search(r"conv_in|conv_out|time_embedding|text_projection", n)]
    assert "lora_unet_mid_block_attentions_0_proj_out" in got
    assert "lora_te_text_model_encoder_layers_4_mlp_fc2" in got
    if conv:  # LoCon: 3x3 convs take conv_dim/alpha, time_emb_proj and the 1x1 shortcut dim/alpha
        assert got["lora_unet_down_blocks_0_resnets_0_conv1"] == ((conv[0], 32, 3, 3), (32, conv[0], 1, 1), conv[1])
        assert got["lora_unet_down_blocks_0_downsamplers_0_conv"][0] == (conv[0], 32, 3, 3)
        assert got["lora_unet_down_blocks_1_resnets_0_time_emb_proj"] == ((8, 128), (64, 8), 4.0)
        assert got["lora_unet_down_blocks_1_resnets_0_conv_shortcut"] == ((8, 32, 1, 1), (64, 8, 1, 1), 4.0)


def test_sd15_architecture_has_kohyas_264_modules_and_2359296_parameters():
    """FACTS.md, measured with kohya's own create_network: 192 UNet + 72 text-encoder modules."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):  # the SD1.5 architecture without its 3.4 GB of weights
        unet = UNet2DConditionModel(cross_attention_dim=768)
        text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                    num_attention_heads=12, projection_dim=768))
    components = types.SimpleNamespace(unet=unet, text_encoder=text_encoder)
    network = attach_network(components, NetworkSpec(4, 1.0, train_text_encoder=True))
    names = network.module_names()
    assert (len(names), sum(n.startswith("lora_unet_") for n in names)) == (264, 192)
    assert network.trainable_parameter_count() == 2_359_296
    assert sum(p.numel() for p in network.unet_parameters()) == 1_695_744
    network.detach()


def unet_and_te_outputs(components):
    g = torch.Generator().manual_seed(0)
    latents, context = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    ids = torch.tensor([[49406, 320, 2368, 49407] + [49407] * 73])
    with torch.no_grad():
        return (components.unet(latents, torch.tensor([300]), context).sample,
                components.text_encoder(ids).last_hidden_state)


def randomize(network, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.unet_parameters() + network.text_encoder_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


LOCON = {"conv_dim": 4, "conv_alpha": 2}


def test_fresh_locon_network_leaves_outputs_unchanged_and_the_sampler_applies_it(model):
    base = unet_and_te_outputs(model)
    network = attach_network(model, NetworkSpec(8, 2.0, train_text_encoder=True, network_args=LOCON), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(unet_and_te_outputs(model), base))
    randomize(network, seed=5)
    live = unet_and_te_outputs(model)
    assert not torch.equal(live[0], base[0])
    state_dict = network.kohya_state_dict()
    network.detach()
    # lrfind's sampler merges the file's deltas (1x1 and 3x3 conv included) into the weights
    with applied_loras(model, [(state_dict, 1.0)]):
        for got, want in zip(unet_and_te_outputs(model), live):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_diffusers_load_lora_weights_applies_a_locon_file_like_lrfind(tiny, tmp_path):
    scratch = private_copy(tiny)
    network = attach_network(scratch, NetworkSpec(4, 2.0, train_text_encoder=True, network_args=LOCON), seed=0)
    randomize(network, seed=7, scale=0.2)
    path = save_lora(tmp_path / "locon.safetensors", network.kohya_state_dict(), {}, "fp32")
    network.detach()
    ours = generate_images(tiny, ["a cat"], [3], **SAMPLE, loras=[(path, 1.0)])[0]
    base = generate_images(tiny, ["a cat"], [3], **SAMPLE)[0]
    pipeline = build_pipeline(private_copy(tiny))
    pipeline.load_lora_weights(str(path))
    theirs = pipeline("a cat", negative_prompt="", num_inference_steps=SAMPLE["steps"],
                      guidance_scale=SAMPLE["guidance_scale"], width=64, height=64,
                      generator=torch.Generator().manual_seed(3)).images[0]
    as_array = lambda image: np.asarray(image).astype(np.int16)  # noqa: E731
    assert np.abs(as_array(ours) - as_array(theirs)).max() <= 1
    assert np.abs(as_array(ours) - as_array(base)).max() > 10


def one_module(model, spec_args, dropout=None, path="down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"):
    network = attach_network(model, NetworkSpec(8, 4.0, network_args=spec_args, network_dropout=dropout), seed=0)
    randomize(network, seed=1)
    return network, dict(network.lora_layers("unet"))[path]


def test_dropouts_are_kohyas_and_act_in_training_only(model):
    x = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(4))
    network, layer = one_module(model, {"rank_dropout": 0.5, "module_dropout": 0.3}, dropout=0.25)
    base = layer.base_layer(x)
    down, up = layer.lora_down.weight, layer.lora_up.weight
    with torch.no_grad():
        model.unet.eval()
        torch.testing.assert_close(layer(x), base + x @ down.T @ up.T * 0.5)  # eval: no dropout at all
        model.unet.train()
        for seed in range(6):
            torch.manual_seed(seed)  # kohya's order of draws: module, neuron, then rank dropout
            skipped = torch.rand(1) < 0.3
            lx = torch.nn.functional.dropout(x @ down.T, p=0.25)
            mask = (torch.rand((2, 8)) > 0.5).unsqueeze(1)
            want = base if skipped else base + (lx * mask) @ up.T * (0.5 / (1 - 0.5))
            torch.manual_seed(seed)
            torch.testing.assert_close(layer(x), want)
    network.detach()


def test_text_encoder_modules_follow_the_unets_train_mode(model):
    network = attach_network(model, NetworkSpec(8, 8.0, train_text_encoder=True,
                                                 network_args={"module_dropout": 0.9999}), seed=0)
    randomize(network, seed=2)
    model.unet.eval()
    active = unet_and_te_outputs(model)[1]
    model.unet.train()  # the loop trains with the UNet in train mode: text-encoder LoRA drops out too
    torch.manual_seed(0)
    dropped = unet_and_te_outputs(model)[1]
    network.detach()
    model.unet.eval()
    assert not torch.equal(active, dropped)
    assert torch.equal(dropped, unet_and_te_outputs(model)[1])  # every module skipped: the base model


def test_loraplus_gives_lora_up_its_own_group_at_lr_times_ratio(model):
    args = {"loraplus_lr_ratio": 16, "loraplus_text_encoder_lr_ratio": 4}
    network = attach_network(model, NetworkSpec(4, 4.0, train_text_encoder=True, network_args=args))
    groups = network.param_groups(1e-4, 5e-5)
    assert [(g["name"], g["lr"]) for g in groups] == [
        ("unet", 1e-4), ("unet plus", pytest.approx(16e-4)), ("textencoder", 5e-5), ("textencoder plus", 2e-4)]
    ups = {id(m.lora_up.weight) for part in ("unet", "text_encoder") for _, m in network.lora_layers(part)}
    assert all(id(p) in ups for g in groups if g["name"].endswith("plus") for p in g["params"])
    assert not any(id(p) in ups for g in groups if not g["name"].endswith("plus") for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == 2 * len(network.module_names())
    assert [g["name"] for g in network.param_groups(1e-4, None)] == ["unet", "unet plus"]
    network.detach()
    plain = attach_network(model, NetworkSpec(4, 4.0))
    assert [g["name"] for g in plain.param_groups(1e-4, None)] == ["unet"]
    plain.detach()


def test_conv_dim_needs_the_unet(model):
    with pytest.raises(ConfigError, match="conv_dim=4.*text encoder"):
        attach_network(model, NetworkSpec(4, 4.0, train_unet=False, train_text_encoder=True,
                                          network_args={"conv_dim": 4}))
    assert not any(type(m).__name__ == "LoRAModule" for m in model.text_encoder.modules())


def read_file(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()


def test_locon_trains_saves_and_continues_bit_exactly(example_dataset, tmp_path, feature_store):
    from lrfind.config import build
    from lrfind.models.tiny import build_tiny
    from lrfind.data.kohya import scan_dataset
    from lrfind.training.config import TrainConfig
    from lrfind.training.kohya_names import train_config
    from lrfind.training.setup import lora_run

    first = tmp_path / "a"
    options = ["--network-args", "conv_dim=4", "conv_alpha=1", "rank_dropout=0.1", "--network-dropout", "0.1"]
    assert main(["train", str(example_dataset), *BASE, *options, "--max-train-steps", "3", "--output-dir", str(first),
                 "--output-name", "a", "--save-precision", "float"]) == 0
    saved, metadata = read_file(first / "a.safetensors")
    assert len([k for k in saved if k.endswith(".alpha")]) == 72 + 45 + 30
    assert any(t.abs().sum() > 0 for k, t in saved.items() if "conv1.lora_up" in k)  # the convs trained
    assert json.loads(metadata["ss_network_args"]) == {"conv_dim": "4", "conv_alpha": "1", "rank_dropout": "0.1",
                                                       "dropout": 0.1}
    assert metadata["ss_network_dropout"] == "0.1" and metadata["ss_network_module"] == "networks.lora"
    config = train_config(dict(train_data_dir=example_dataset, resolution=64, network_dim=4, network_alpha=2,
                   max_train_steps=1, network_args={"conv_dim": 4, "conv_alpha": 1},
                   network_weights=first / "a.safetensors"))
    components = build_tiny(seed=0)
    with lora_run(config, components, scan_dataset(config.dataset), feature_store) as parts:
        reloaded = parts.network.kohya_state_dict("fp32")
    assert set(reloaded) == set(saved) and all(torch.equal(reloaded[k], saved[k]) for k in saved)


def test_metadata_has_kohyas_bucket_validation_and_model_keys(example_dataset, tmp_path):
    out = tmp_path / "o"
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(out),
                 "--validation-split", "0.25", "--network-train-unet-only"]) == 0
    _, metadata = read_file(out / "last.safetensors")
    info = json.loads(metadata["ss_bucket_info"])
    assert set(info) == {"buckets", "mean_img_ar_error"} and info["mean_img_ar_error"] >= 0
    assert [b["resolution"] for b in info["buckets"].values()] == sorted(b["resolution"] for b in info["buckets"].values())
    assert sum(b["count"] for b in info["buckets"].values()) == int(metadata["ss_num_train_images"]) - \
        10 * int(metadata["ss_num_validation_images"])  # the example's concept has 10 repeats
    assert int(metadata["ss_num_validation_images"]) >= 1
    assert (metadata["ss_enable_bucket"], metadata["ss_bucket_no_upscale"]) == ("True", "False")
    assert (metadata["ss_min_bucket_reso"], metadata["ss_max_bucket_reso"]) == ("64", "1024")
    assert (metadata["ss_validation_split"], metadata["ss_validation_seed"]) == ("0.25", "0")
    assert metadata["ss_max_grad_norm"] == "1.0" and metadata["ss_network_dropout"] == "None"  # kohya's default
    assert "ss_network_args" not in metadata  # kohya writes it only when there are network args
    assert "ss_sd_model_hash" not in metadata  # tiny is no file: kohya writes no hash for such names


def test_base_model_hashes_are_kohyas(tmp_path):
    blob = bytes(range(256)) * (5 * 4096 + 7)  # > 1 MiB + 64 KiB
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(blob)
    assert sd_model_hashes(model_file) == {
        "ss_sd_model_hash": hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8],
        "ss_new_sd_model_hash": hashlib.sha256(blob).hexdigest()}
    assert sd_model_hashes(tmp_path) == {"ss_sd_model_hash": "IsADirectory", "ss_new_sd_model_hash": "IsADirectory"}
    assert sd_model_hashes("tiny") == {}


@pytest.mark.parametrize("args, needle, accepted", [
    (["--network-args", "algo=loha"], "--network-args algo", "use conv_dim, conv_alpha, loraplus_lr_ratio"),
    (["--network-args", "block_dims=2,4"], "block-wise", "use conv_dim"),
    (["--network-args", "dropout=0.1"], "--network-dropout", "use conv_dim"),
    (["--network-args", "conv_dim=four"], "conv_dim=four", "a whole number >= 1"),
    (["--network-args", "conv_dim=0"], "conv_dim=0", "a whole number >= 1"),
    (["--network-args", "conv_alpha=2"], "conv_alpha=2", "needs conv_dim"),
    (["--network-args", "rank_dropout=1.5"], "rank_dropout=1.5", "in [0, 1)"),
    (["--network-args", "loraplus_lr_ratio=-1"], "loraplus_lr_ratio=-1", "> 0"),
    (["--network-dropout", "1"], "network_dropout", "less than 1"),
    (["--network-args", "loraplus_lr_ratio=16", "--optimizer-type", "Prodigy", "--learning-rate", "1"],
     "loraplus_lr_ratio", "use AdamW, AdamW8bit or Lion"),
])
def test_bad_network_args_exit_2_with_one_line_and_write_nothing(args, needle, accepted, example_dataset, tmp_path,
                                                                 capsys):
    out = tmp_path / "out"
    rc = main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and accepted in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_malformed_key_value_is_a_usage_error_naming_the_option(example_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(tmp_path / "o"),
              "--network-args", "conv_dim"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--network-args" in err and "key=value" in err
    assert not (tmp_path / "o").exists()


def test_network_args_toml_list_as_kohya_writes_it(example_dataset, tmp_path):
    config = tmp_path / "cfg.toml"
    out = tmp_path / "t"
    config.write_text(f'train_data_dir = "{example_dataset.as_posix()}"\nmax_train_steps = 1\nresolution = 64\n'
                      f'network_args = ["conv_dim=2", "conv_alpha=1"]\noutput_dir = "{out.as_posix()}"\n'
                      'progress = false\nnetwork_train_unet_only = true\n')
    assert main(["train", "--config", str(config)]) == 0
    saved, _ = read_file(out / "last.safetensors")
    assert saved["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape[0] == 2
    config.write_text(config.read_text().replace('"conv_alpha=1"', '"conv_alpha"'))
    assert main(["train", "--config", str(config), "--output-dir", str(tmp_path / "u")]) == 2
    assert not (tmp_path / "u").exists()


@pytest.fixture(scope="module")
def lora_file(example_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights")
    assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(out),
                 "--network-train-unet-only"]) == 0
    return out / "last.safetensors"


@pytest.mark.parametrize("args, needle", [
    (["--network-dim", "8"], "--network-dim 4"),
    (["--network-alpha", "1"], "--network-alpha 2"),
])
def test_network_weights_of_another_shape_exit_2(lora_file, args, needle, example_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(out),
               "--network-train-unet-only", "--network-weights", str(lora_file), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and "--network-weights" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_network_weights_of_another_type_exit_2(lora_file, example_dataset, tmp_path, capsys):
    state_dict, metadata = read_file(lora_file)
    other = save_lora(tmp_path / "other.safetensors", state_dict,
                      {**metadata, "ss_network_module": "lycoris.kohya", "ss_network_args": '{"algo": "locon"}'}, "fp16")
    locon = attach_network(private_copy_of_tiny(), NetworkSpec(4, 2.0, network_args=LOCON))
    conv_file = save_lora(tmp_path / "locon.safetensors", locon.kohya_state_dict(), {}, "fp16")
    locon.detach()
    for path, needle in ((other, "--network-module lycoris.kohya"), (conv_file, "conv_dim")):
        out = tmp_path / "out"
        rc = main(["train", str(example_dataset), *BASE, "--max-train-steps", "1", "--output-dir", str(out),
                   "--network-train-unet-only", "--network-weights", str(path)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and needle in err and str(path) in err and len(err.splitlines()) == 1
        assert not out.exists()


def private_copy_of_tiny():
    from lrfind.models.tiny import build_tiny

    return build_tiny(seed=0)


def test_a_run_with_dropout_repeats_exactly(example_dataset, tmp_path):
    dropouts = ["--network-args", "rank_dropout=0.3", "module_dropout=0.2", "--network-dropout", "0.2"]
    files = {}
    for name, extra in (("a", dropouts), ("b", dropouts), ("plain", [])):
        assert main(["train", str(example_dataset), *BASE, "--max-train-steps", "3", "--output-dir", str(tmp_path),
                     "--output-name", name, "--save-precision", "float", "--network-train-unet-only",
                     "--learning-rate", "1e-3", *extra]) == 0
        files[name] = read_file(tmp_path / f"{name}.safetensors")[0]
    assert all(torch.equal(files["a"][k], files["b"][k]) for k in files["a"])  # dropout masks are seeded
    assert not all(torch.equal(files["a"][k], files["plain"][k]) for k in files["a"])  # and they act


def test_a_round_one_file_attention_only_still_loads_and_samples(model):
    """Round one adapted only the attention projections (48 + 20 modules on the tiny model)."""
    network = attach_network(model, NetworkSpec(8, 2.0, train_text_encoder=True), seed=0)
    randomize(network, seed=9)
    attention = re.compile(r"_(to_q|to_k|to_v|to_out_0|q_proj|k_proj|v_proj|out_proj)\.")
    old = {k: v for k, v in network.kohya_state_dict().items() if attention.search(k)}
    network.detach()
    assert len(old) == (48 + 20) * 3
    fresh = attach_network(model, NetworkSpec(8, 2.0, train_text_encoder=True), seed=1)
    assert fresh.load_kohya_state_dict(old, source="round-one.safetensors") == 48 + 20
    loaded = fresh.kohya_state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in old.items())
    assert not any(loaded[k].any() for k in loaded if "ff_net_2.lora_up" in k)  # the new modules: fresh
    fresh.detach()
    base = unet_and_te_outputs(model)
    with applied_loras(model, [(old, 1.0)]):  # the sampler still maps every key of an old file
        merged = unet_and_te_outputs(model)
    assert not torch.equal(merged[0], base[0]) and not torch.equal(merged[1], base[1])


def test_gradient_checkpointing_recomputes_the_same_dropout(model):
    """Checkpointed blocks run forward twice: the dropout masks must be the same both times."""
    network = attach_network(model, NetworkSpec(4, 4.0, network_args={"rank_dropout": 0.5, "module_dropout": 0.3},
                                                network_dropout=0.3), seed=0)
    randomize(network, seed=3)
    g = torch.Generator().manual_seed(1)
    latents, context = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    model.unet.train()
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.unet.enable_gradient_checkpointing()
        for p in network.unet_parameters():
            p.grad = None
        torch.manual_seed(7)
        model.unet(latents, torch.tensor([300]), context).sample.square().mean().backward()
        grads.append([None if p.grad is None else p.grad.clone() for p in network.unet_parameters()])
    model.unet.disable_gradient_checkpointing()
    model.unet.eval()
    network.detach()
    assert [a is None for a in grads[0]] == [b is None for b in grads[1]]  # the same modules dropped
    assert all(a is None or torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(*grads))
    assert any(a is None for a in grads[0]) and any(a is not None and a.abs().sum() > 0 for a in grads[0])


def test_the_probes_lr_sweep_keeps_loraplus_ratios():
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.runner import _RangeSweep

    optimizer = torch.optim.AdamW([{"params": [torch.zeros(1, requires_grad=True)], "lr": 1e-6, "name": "unet"},
                                   {"params": [torch.zeros(1, requires_grad=True)], "lr": 16e-6, "name": "unet plus"}])
    cfg = ProbeConfig(dataset={"train_dir": "d"}, range_steps=10, range_min_lr=1e-6, range_max_lr=1e-2)
    sweep = _RangeSweep(types.SimpleNamespace(optimizer=optimizer), cfg)
    for step in (0, 5, 10):
        sweep._set_lr(step)
        lrs = [g["lr"] for g in optimizer.param_groups]
        assert lrs[0] == pytest.approx(sweep.lr_at(step)) and lrs[1] == pytest.approx(16 * lrs[0])
