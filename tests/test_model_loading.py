"""Offline model loading: diffusers folder and single-file round trips, refusals, the `model` CLI."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from lrfind.cli import main
from lrfind.config import ModelConfig
from lrfind.errors import ModelError
from lrfind.models.loading import load_components
from lrfind.models.single_file import components_to_original

PARTS = ("unet", "vae", "text_encoder")


def assert_bit_identical(loaded, reference) -> None:
    for part in PARTS:
        ours, theirs = getattr(loaded, part).state_dict(), getattr(reference, part).state_dict()
        assert ours.keys() == theirs.keys(), part
        different = [k for k in theirs if ours[k].dtype != theirs[k].dtype or not torch.equal(ours[k], theirs[k])]
        assert not different, f"{part}: {different[:3]}"
        assert not any(p.requires_grad for p in getattr(loaded, part).parameters())
        assert not getattr(loaded, part).training


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("lrfind: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    """`lrfind model save tiny DIR --single-file`, run once in-process."""
    target = tmp_path_factory.mktemp("models") / "tiny-model"
    code = main(["model", "save", "tiny", str(target), "--single-file", "--seed", "0"])
    assert code == 0
    return target


@pytest.fixture()
def no_network(monkeypatch):
    """Any socket connection fails, and the offline switches are off: loading must not need them."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def save_safetensors(path: Path, tensors: dict) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


# --- shipped SD 1.5 configs ---------------------------------------------------------------------

def test_sd15_configs_build_sd15_sized_components_on_meta():
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lrfind.models.config_dirs import sd15_config_dir

    folder = sd15_config_dir()
    assert (folder / "model_index.json").is_file() and (folder / "scheduler" / "scheduler_config.json").is_file()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder"))
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, text_encoder)]
    assert counts == [859_520_964, 83_653_863, 123_060_480]  # SD 1.5's U-Net, VAE, CLIP ViT-L/14 text
    assert text_encoder.config.hidden_size == 768 and text_encoder.config.num_hidden_layers == 12


def test_inverse_conversion_of_sd15_layout_matches_diffusers_converters():
    """diffusers -> original (ours) -> diffusers (diffusers' converters) gives back every key and shape."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    from lrfind.models.config_dirs import sd15_config_dir
    from lrfind.models.to_original import unet_to_original, vae_to_original

    folder = sd15_config_dir()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae"))
    original_unet = unet_to_original(unet.state_dict(), unet.config)
    original_vae = vae_to_original(vae.state_dict(), vae.config)
    # Well-known keys of v1-5-pruned-emaonly.safetensors, with their shapes.
    assert original_unet["model.diffusion_model.input_blocks.3.0.op.weight"].shape == (320, 320, 3, 3)
    assert original_unet["model.diffusion_model.output_blocks.2.1.conv.weight"].shape == (1280, 1280, 3, 3)
    assert original_unet["model.diffusion_model.output_blocks.8.2.conv.weight"].shape == (640, 640, 3, 3)
    assert original_unet["model.diffusion_model.middle_block.1.proj_in.weight"].shape == (1280, 1280, 1, 1)
    assert original_vae["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in original_vae
    assert (len(original_unet), len(original_vae)) == (686, 248)
    back = convert_ldm_unet_checkpoint(original_unet, dict(unet.config))
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in unet.state_dict().items()}
    back = convert_ldm_vae_checkpoint(original_vae, dict(vae.config))
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in vae.state_dict().items()}


# --- round trips ---------------------------------------------------------------------------------

def test_model_save_writes_a_diffusers_folder_and_single_file(saved_tiny, capsys):
    assert (saved_tiny / "model_index.json").is_file()
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (saved_tiny / part).is_dir(), part
    assert (saved_tiny / "tiny.safetensors").is_file()
    # transformers 4.x's CLIPTokenizer (kohya, older diffusers) reads vocab.json + merges.txt
    assert (saved_tiny / "tokenizer" / "vocab.json").is_file() and (saved_tiny / "tokenizer" / "merges.txt").is_file()
    assert not list(saved_tiny.parent.glob(".*tmp"))  # the temp folder was renamed, not left behind
    assert os.stat(saved_tiny / "tiny.safetensors").st_mode & 0o044  # readable like any other file
    keys = components_to_original_keys(saved_tiny / "tiny.safetensors")
    assert any(k.startswith("model.diffusion_model.") for k in keys)
    assert any(k.startswith("first_stage_model.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)


def components_to_original_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def test_diffusers_folder_round_trip_is_bit_identical(saved_tiny, tiny, no_network):
    loaded = load_components(ModelConfig(model=str(saved_tiny)))
    assert_bit_identical(loaded, tiny)
    assert loaded.name == saved_tiny.name and loaded.prediction_type == "epsilon"
    assert torch.equal(loaded.noise_scheduler.alphas_cumprod, tiny.noise_scheduler.alphas_cumprod)
    assert loaded.tokenizer("a photo").input_ids == tiny.tokenizer("a photo").input_ids
    assert "HF_HUB_OFFLINE" not in os.environ  # the offline switch is restored after loading


def test_single_file_round_trip_is_bit_identical(saved_tiny, tiny, no_network):
    loaded = load_components(ModelConfig(model=str(saved_tiny / "tiny.safetensors")))
    assert_bit_identical(loaded, tiny)
    assert loaded.name == "tiny.safetensors" and loaded.prediction_type == "epsilon"


def test_other_seed_gives_other_weights(saved_tiny):
    loaded = load_components(ModelConfig(model="tiny", seed=1))
    reference = load_components(ModelConfig(model=str(saved_tiny / "tiny.safetensors")))
    assert not torch.equal(loaded.unet.conv_in.weight, reference.unet.conv_in.weight)


def test_ckpt_needs_allow_pickle_and_loads_weights_only(tiny, tmp_path):
    checkpoint = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": components_to_original(tiny), "global_step": 10}, checkpoint)
    with pytest.raises(ModelError, match="--allow-pickle"):
        load_components(ModelConfig(model=str(checkpoint)))
    loaded = load_components(ModelConfig(model=str(checkpoint), allow_pickle=True))
    assert_bit_identical(loaded, tiny)
    assert loaded.name == "tiny.ckpt"


def test_diffusers_folder_with_pickled_weights_needs_allow_pickle(saved_tiny, tiny, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(saved_tiny, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    code, _, err = run_cli(capsys, "model", "info", str(folder))
    assert_one_line_error(code, err, "unet", "--allow-pickle")
    assert err.count("\n") == 1  # nothing else on stderr
    assert_bit_identical(load_components(ModelConfig(model=str(folder), allow_pickle=True)), tiny)


class NotAWeight:  # a pickled object of this class would need code to run on load
    pass


def test_ckpt_with_python_objects_is_refused_even_with_allow_pickle(tiny, tmp_path):
    checkpoint = tmp_path / "evil.ckpt"
    torch.save({"state_dict": components_to_original(tiny), "payload": NotAWeight()}, checkpoint)
    with pytest.raises(ModelError, match="Python objects"):
        load_components(ModelConfig(model=str(checkpoint), allow_pickle=True))


# --- refusals ------------------------------------------------------------------------------------

def fake_sd2_state() -> dict:
    return {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
        "cond_stage_model.model.token_embedding.weight": torch.zeros(16, 1024),
        "cond_stage_model.model.transformer.resblocks.0.ln_1.weight": torch.zeros(1024),
    }


def fake_sdxl_state() -> dict:
    return {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(16, 768),
        "conditioner.embedders.1.model.positional_embedding": torch.zeros(77, 1280),
    }


@pytest.mark.parametrize(
    "state, words",
    [(fake_sd2_state(), ("SD 2.x", "not supported yet")), (fake_sdxl_state(), ("SDXL checkpoint has no", "second text encoder"))],
    ids=["sd2", "sdxl-partial"],
)
def test_sd2_and_partial_sdxl_single_files_are_refused(state, words, tmp_path, capsys):
    path = save_safetensors(tmp_path / "other.safetensors", state)
    with pytest.raises(ModelError) as caught:
        load_components(ModelConfig(model=str(path)))
    assert all(word in str(caught.value) for word in words) and str(path) in str(caught.value)
    code, _, err = run_cli(capsys, "model", "info", str(path))
    assert_one_line_error(code, err, *words)


def test_inpainting_and_lora_files_are_refused(tiny, tmp_path):
    state = components_to_original(tiny)
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 9, 3, 3)
    with pytest.raises(ModelError, match="9 input channels"):
        load_components(ModelConfig(model=str(save_safetensors(tmp_path / "inpaint.safetensors", state))))
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32)}
    with pytest.raises(ModelError, match="LoRA file"):
        load_components(ModelConfig(model=str(save_safetensors(tmp_path / "lora.safetensors", lora))))


def test_single_file_with_a_missing_weight_is_refused(tiny, tmp_path):
    state = components_to_original(tiny)
    del state["model.diffusion_model.out.2.weight"]
    path = save_safetensors(tmp_path / "incomplete.safetensors", state)
    with pytest.raises(ModelError, match="missing"):
        load_components(ModelConfig(model=str(path)))


def test_truncated_and_empty_safetensors_are_model_errors(saved_tiny, tmp_path, capsys):
    data = (saved_tiny / "tiny.safetensors").read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for path in (truncated, empty):
        with pytest.raises(ModelError, match="download it again"):
            load_components(ModelConfig(model=str(path)))
        code, _, err = run_cli(capsys, "model", "info", str(path))
        assert_one_line_error(code, err, path.name, "truncated")


@pytest.mark.parametrize("case", ["missing", "no_model_index", "unknown_extension"])
def test_bad_paths_are_one_line_model_errors(case, tmp_path, capsys):
    if case == "missing":
        path, words = tmp_path / "nope.safetensors", ("no such file",)
    elif case == "no_model_index":
        path, words = tmp_path / "folder", ("model_index.json",)
        (path / "unet").mkdir(parents=True)
    else:
        path, words = tmp_path / "model.onnx", ("unknown model file type", ".safetensors")
        path.write_bytes(b"\0" * 16)
    with pytest.raises(ModelError):
        load_components(ModelConfig(model=str(path)))
    code, out, err = run_cli(capsys, "model", "info", str(path))
    assert_one_line_error(code, err, str(path), *words)


# --- CLI -----------------------------------------------------------------------------------------

def test_model_info_reports_architecture_and_parameter_counts(saved_tiny, tiny, capsys):
    unet_params = sum(p.numel() for p in tiny.unet.parameters())
    for source in (str(saved_tiny / "tiny.safetensors"), str(saved_tiny), "tiny"):
        code, out, err = run_cli(capsys, "model", "info", source)
        assert code == 0, err
        assert "architecture: tiny-sd1" in out
        assert f"parameters unet: {unet_params:,}" in out


def test_model_save_refuses_a_non_empty_folder(saved_tiny, capsys):
    before = sorted(p.name for p in saved_tiny.iterdir())
    code, _, err = run_cli(capsys, "model", "save", "tiny", str(saved_tiny))
    assert_one_line_error(code, err, str(saved_tiny), "not empty")
    assert sorted(p.name for p in saved_tiny.iterdir()) == before  # nothing already written is lost
