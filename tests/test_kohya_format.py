"""kohya-format LoRA files: key names, alpha, precisions, hashes, metadata, round trip, errors."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from lrfind.data.types import Concept, Dataset, ImageRecord
from lrfind.errors import ConfigError, ModelError
from lrfind.network import (
    LoraSpec,
    attach_lora,
    kohya_metadata,
    load_lora,
    read_dim_and_alpha,
    save_lora,
)

UNET_KEY = re.compile(
    r"^lora_unet_(down_blocks_\d+|up_blocks_\d+|mid_block)_attentions_\d+_(proj_in|proj_out|"
    r"transformer_blocks_\d+_(attn[12]_(to_q|to_k|to_v|to_out_0)|ff_net_0_proj|ff_net_2))\."
    r"(lora_down\.weight|lora_up\.weight|alpha)$"
)
TE_KEY = re.compile(
    r"^lora_te_text_model_encoder_layers_\d+_(self_attn_(q|k|v|out)_proj|mlp_fc[12])\."
    r"(lora_down\.weight|lora_up\.weight|alpha)$"
)


@pytest.fixture()
def model(tiny):
    return dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                               text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={})


def trained_network(model, dim=8, alpha=2.0, text_encoder=True, seed=0):
    network = attach_lora(model, LoraSpec(dim, alpha, train_text_encoder=text_encoder), seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in network.unet_parameters() + network.text_encoder_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return network


def outputs(components):
    g = torch.Generator().manual_seed(0)
    latents, context = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    ids = torch.tensor([[49406, 320, 2368, 49407] + [49407] * 73])
    with torch.no_grad():
        return (components.unet(latents, torch.tensor([300]), context).sample,
                components.text_encoder(ids).last_hidden_state)


def test_key_names_follow_kohya_exactly(model):
    network = trained_network(model)
    state_dict = network.kohya_state_dict()
    network.detach()
    unet_keys = [k for k in state_dict if k.startswith("lora_unet_")]
    te_keys = [k for k in state_dict if k.startswith("lora_te_")]
    # 6 Transformer2DModels x 12 modules; 5 CLIP layers x (4 attention projections + fc1, fc2)
    assert len(unet_keys) == 72 * 3 and len(te_keys) == 5 * 6 * 3
    assert all(UNET_KEY.match(k) for k in unet_keys), [k for k in unet_keys if not UNET_KEY.match(k)]
    assert all(TE_KEY.match(k) for k in te_keys), [k for k in te_keys if not TE_KEY.match(k)]
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"
    assert state_dict[name + ".lora_down.weight"].shape == (8, 32)
    assert state_dict[name + ".lora_up.weight"].shape == (32, 8)
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.alpha" in state_dict
    assert "lora_te_text_model_encoder_layers_4_self_attn_out_proj.lora_up.weight" in state_dict
    proj_in = "lora_unet_down_blocks_0_attentions_0_proj_in"  # a 1x1 conv: 4-D, as kohya
    assert state_dict[proj_in + ".lora_down.weight"].shape == (8, 32, 1, 1)
    assert state_dict[proj_in + ".lora_up.weight"].shape == (32, 8, 1, 1)
    assert state_dict["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"].shape == (8, 32)


def test_alpha_is_written_not_rank(model, tmp_path):
    network = trained_network(model, dim=8, alpha=2.0)
    path = save_lora(tmp_path / "a.safetensors", network.kohya_state_dict(), {}, "fp32")
    network.detach()
    state_dict, _ = load_lora(path)
    alphas = [v for k, v in state_dict.items() if k.endswith(".alpha")]
    assert len(alphas) == 72 + 30 and all(a.dim() == 0 and a.item() == 2.0 for a in alphas)
    assert read_dim_and_alpha(state_dict) == (8, 2.0)


@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16),
                                              ("fp32", torch.float32)])
def test_save_precisions(model, tmp_path, precision, dtype):
    network = trained_network(model, text_encoder=False)
    full = network.kohya_state_dict("fp32")
    network.detach()
    path = save_lora(tmp_path / f"{precision}.safetensors", full, {"ss_network_dim": "8"}, precision)
    loaded, metadata = load_lora(path)
    assert set(loaded) == set(full)
    assert all(t.dtype == dtype for t in loaded.values())
    assert all(torch.equal(loaded[k], full[k].to(dtype)) for k in full)
    assert metadata["ss_network_dim"] == "8"


def test_kohya_hashes(model, tmp_path):
    network = trained_network(model)
    path = save_lora(tmp_path / "h.safetensors", network.kohya_state_dict(),
                     {"ss_network_dim": "8", "ss_output_name": "h"}, "fp16")
    network.detach()
    _, metadata = load_lora(path)
    raw = path.read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    # The model hash covers the tensor bytes after the header (kohya / additional-networks).
    assert metadata["sshs_model_hash"] == hashlib.sha256(raw[8 + header_length:]).hexdigest()
    # Legacy hash: 64 KiB at 1 MiB; a small file has nothing there: sha256(b"")[:8].
    assert len(raw) < 0x100000 and metadata["sshs_legacy_hash"] == "e3b0c442"


def test_round_trip_gives_identical_outputs(model, tmp_path):
    network = trained_network(model, dim=8, alpha=2.0)
    expected = outputs(model)
    path = save_lora(tmp_path / "rt.safetensors", network.kohya_state_dict("fp32"), {}, "fp32")
    network.detach()
    state_dict, _ = load_lora(path)
    fresh = attach_lora(model, LoraSpec(8, 2.0, train_text_encoder=True), seed=99)
    assert fresh.load_kohya_state_dict(state_dict, source=str(path)) == 72 + 30
    for got, want in zip(outputs(model), expected):
        assert torch.equal(got, want)
    fresh.detach()


def test_network_weights_mismatch_is_a_config_error(model, tmp_path):
    network = trained_network(model, dim=8, alpha=2.0)
    path = save_lora(tmp_path / "w.safetensors", network.kohya_state_dict(), {}, "fp16")
    network.detach()
    state_dict, _ = load_lora(path)
    cases = [(LoraSpec(4, 2.0, train_text_encoder=True), "--network-dim 8"),
             (LoraSpec(8, 8.0, train_text_encoder=True), "--network-alpha 2"),
             (LoraSpec(8, 2.0, train_text_encoder=False), "not in this network")]
    for spec, message in cases:
        other = attach_lora(model, spec)
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            other.load_kohya_state_dict(state_dict, source=str(path))
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        other.detach()


def test_bad_files_are_model_errors_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + bytes(100))
    truncated = tmp_path / "empty.safetensors"
    truncated.write_bytes(b"")
    pickled = tmp_path / "lora.ckpt"
    torch.save({"a": torch.zeros(1)}, pickled)
    diffusers_format = tmp_path / "diffusers.safetensors"
    save_file({"unet.down_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 32)},
              str(diffusers_format))
    half = tmp_path / "half.safetensors"
    save_file({"lora_unet_x_to_q.lora_down.weight": torch.zeros(4, 32)}, str(half))
    for path in (tmp_path / "missing.safetensors", corrupt, truncated, pickled, diffusers_format,
                 half):
        with pytest.raises(ModelError) as info:
            load_lora(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message


def test_failed_save_keeps_the_existing_file(model, tmp_path):
    network = trained_network(model, text_encoder=False)
    state_dict = network.kohya_state_dict()
    network.detach()
    path = save_lora(tmp_path / "keep.safetensors", state_dict, {"ss_epoch": "1"}, "fp16")
    before = path.read_bytes()
    with pytest.raises(TypeError, match="ss_epoch"):
        save_lora(path, state_dict, {"ss_epoch": 2}, "fp16")  # not a string
    with pytest.raises(ValueError, match="fp8"):
        save_lora(path, state_dict, {}, "fp8")
    with pytest.raises(ValueError, match="kohya"):
        save_lora(path, {"unet.to_q.lora_A.weight": torch.zeros(1)}, {}, "fp16")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.safetensors"]


def make_dataset(tmp_path) -> Dataset:
    """Two concepts with real image files and captions, one regularisation folder."""
    def concept(folder_name, captions, is_reg=False):
        folder = tmp_path / folder_name
        folder.mkdir(parents=True)
        repeats, name = folder_name.split("_", 1)
        records = []
        for i, caption in enumerate(captions):
            image = folder / f"{i}.png"
            Image.new("RGB", (64, 48), (40 * i, 80, 120)).save(image)
            (folder / f"{i}.txt").write_text(caption)
            records.append(ImageRecord(image, caption, folder / f"{i}.txt", name, int(repeats),
                                       is_reg, (64, 48), (64, 64), (85, 64)))
        return Concept(folder, name, int(repeats), is_reg, tuple(records))

    return Dataset(
        root=tmp_path,
        concepts=(concept("10_cat", ["cat, Orange fur, sitting", "cat, sitting , ,"]),
                  concept("3_dog", ["dog"])),
        reg_concepts=(concept("1_animal", ["animal"], is_reg=True),),
    )


def test_metadata_values_are_kohya_strings(tmp_path):
    metadata = kohya_metadata(
        network_dim=8, network_alpha=4.0, learning_rate=1e-4, unet_lr=1e-4, text_encoder_lr=5e-5,
        optimizer="torch.optim.adamw.AdamW", lr_scheduler="cosine", epoch=2, steps=46,
        max_train_steps=46, num_epochs=2, num_batches_per_epoch=23, batch_size_per_device=1,
        resolution=512, seed=42, sd_model_name="v1-5.safetensors", dataset=make_dataset(tmp_path),
        training_started_at=1_700_000_000.5, training_finished_at=1_700_000_100.25,
        output_name="mycat", network_train_unet_only=False, clip_skip=2, noise_offset=0.05,
        gradient_accumulation_steps=2,
    )
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    required = """ss_network_dim ss_network_alpha ss_network_module ss_learning_rate ss_unet_lr
        ss_text_encoder_lr ss_optimizer ss_lr_scheduler ss_epoch ss_steps ss_max_train_steps
        ss_num_train_images ss_num_reg_images ss_num_batches_per_epoch ss_num_epochs
        ss_batch_size_per_device ss_resolution ss_clip_skip ss_seed ss_sd_model_name
        ss_dataset_dirs ss_tag_frequency ss_mixed_precision ss_network_train_unet_only
        ss_noise_offset ss_min_snr_gamma ss_training_started_at ss_training_finished_at
        ss_output_name ss_caption_extension ss_keep_tokens ss_shuffle_caption
        ss_gradient_accumulation_steps ss_gradient_checkpointing ss_v2 ss_base_model_version
        modelspec.sai_model_spec modelspec.architecture modelspec.title
        modelspec.resolution""".split()
    assert not [k for k in required if k not in metadata]
    assert metadata["ss_network_dim"] == "8" and metadata["ss_network_alpha"] == "4.0"
    assert metadata["ss_network_module"] == "networks.lora"
    assert metadata["ss_resolution"] == "(512, 512)"
    assert metadata["ss_learning_rate"] == "0.0001" and metadata["ss_clip_skip"] == "2"
    assert metadata["ss_v2"] == "False" and metadata["ss_base_model_version"] == "sd_v1"
    assert metadata["ss_network_train_unet_only"] == "False"
    assert metadata["ss_min_snr_gamma"] == "None"  # kohya str()s None as well
    assert metadata["ss_num_train_images"] == str(10 * 2 + 3 * 1)
    assert metadata["ss_num_reg_images"] == "1"
    assert metadata["ss_total_batch_size"] == "2"
    assert json.loads(metadata["ss_dataset_dirs"]) == {
        "10_cat": {"n_repeats": 10, "img_count": 2}, "3_dog": {"n_repeats": 3, "img_count": 1}}
    tags = json.loads(metadata["ss_tag_frequency"])
    assert tags["10_cat"] == {"cat": 2, "orange fur": 1, "sitting": 2}
    assert tags["3_dog"] == {"dog": 1}
    assert metadata["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert metadata["modelspec.resolution"] == "512x512"
    assert metadata["modelspec.title"] == "mycat"


def test_metadata_survives_the_file(model, tmp_path):
    network = trained_network(model, text_encoder=False)
    metadata = kohya_metadata(
        network_dim=8, network_alpha=2.0, learning_rate=1.0, unet_lr=None, text_encoder_lr=None,
        optimizer="DAdaptAdam", lr_scheduler="constant", epoch=1, steps=10, max_train_steps=10,
        num_epochs=1, num_batches_per_epoch=10, batch_size_per_device=1, resolution=(64, 64),
        seed=0, sd_model_name="tiny", dataset=make_dataset(tmp_path / "data"),
        training_started_at=1.0, training_finished_at=2.0, output_name="t")
    path = save_lora(tmp_path / "t.safetensors", network.kohya_state_dict(), metadata, "fp16")
    network.detach()
    with safe_open(str(path), framework="pt") as handle:
        stored = handle.metadata()
    assert {k: stored[k] for k in metadata} == metadata
    assert stored["ss_resolution"] == "(64, 64)"
    assert "sshs_model_hash" in stored and "sshs_legacy_hash" in stored
