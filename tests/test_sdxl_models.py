"""SDXL models (issue 16, the model part): detection, the built-in tiny-sdxl, SGM single files and
diffusers folders saved and loaded bit for bit, `lrfind model info`, and loading for training."""

from __future__ import annotations

import re

import pytest
import torch

from lrfind.cli import main
from lrfind.config import ModelConfig
from lrfind.errors import ModelError
from lrfind.models.families import detect_folder, detect_single_file, family_named
from lrfind.models.loading import load_components
from test_model_loading import assert_one_line_error, run_cli  # the CLI helpers of the SD 1.x loading tests

SDXL_INDEX = {"_class_name": "StableDiffusionXLPipeline", "text_encoder": ["transformers", "CLIPTextModel"],
              "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}
REFINER_INDEX = {"_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None],
                 "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "requires_aesthetics_score": True}




def assert_same_modules(loaded, reference) -> None:
    assert set(loaded.modules()) == set(reference.modules()) == {"unet", "vae", "text_encoder", "text_encoder_2"}
    for part, module in reference.modules().items():
        ours, theirs = loaded.modules()[part].state_dict(), module.state_dict()
        assert ours.keys() == theirs.keys(), part
        different = [k for k in theirs if ours[k].dtype != theirs[k].dtype or not torch.equal(ours[k], theirs[k])]
        assert not different, f"{part}: {different[:3]}"
        assert not loaded.modules()[part].training


def save_safetensors(path, tensors: dict):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def header(path) -> dict:
    from lrfind.models.single_file import read_shapes

    return read_shapes(path)


@pytest.fixture(scope="module")
def tiny_sdxl():
    from lrfind.models.builtin import build_builtin

    return build_builtin("tiny-sdxl", 0)


@pytest.fixture(scope="module")
def saved_sdxl(tmp_path_factory):
    """`lrfind model save tiny-sdxl DIR --single-file`, run once in-process."""
    target = tmp_path_factory.mktemp("sdxl") / "tiny-sdxl-model"
    assert main(["model", "save", "tiny-sdxl", str(target), "--single-file"]) == 0
    return target


@pytest.fixture(scope="module")
def sdxl_original(tiny_sdxl) -> dict:
    """tiny-sdxl's weights in the SGM single-file layout."""
    from lrfind.models.single_file import components_to_original

    return components_to_original(tiny_sdxl)


def real_size_sdxl_shapes() -> dict:
    """The SGM-layout header of a full-size SDXL base file, from the shipped configs (on meta)."""
    from lrfind.models.config_dirs import sdxl_config_dir
    from lrfind.models.single_file import expected_original_shapes

    return expected_original_shapes(str(sdxl_config_dir()), family_named("sdxl"))


# --- detection -----------------------------------------------------------------------------------

def test_sd1_sdxl_folder_and_sdxl_single_files_are_told_apart(tiny, sdxl_original):
    from lrfind.models.single_file import components_to_original

    sd1_shapes = {k: tuple(v.shape) for k, v in components_to_original(tiny).items()}
    assert [part.name for part in detect_single_file(sd1_shapes, "sd1.safetensors")] == ["sd1", "tiny-sd1"]
    tiny_shapes = {k: tuple(v.shape) for k, v in sdxl_original.items()}
    assert [part.name for part in detect_single_file(tiny_shapes, "x.safetensors")] == ["sdxl", "tiny-sdxl"]
    assert [part.name for part in detect_single_file(real_size_sdxl_shapes(), "x.safetensors")] == ["sdxl", "sdxl"]
    assert detect_folder(SDXL_INDEX, "xl").name == "sdxl"
    assert detect_folder({"_class_name": "StableDiffusionPipeline", "text_encoder": ["x", "y"]}, "sd").name == "sd1"


def test_the_shipped_sdxl_configs_are_sdxl_base_sizes_and_sgm_names():
    shapes = real_size_sdxl_shapes()
    # Well-known tensors of sd_xl_base_1.0.safetensors, with their shapes.
    assert shapes["model.diffusion_model.label_emb.0.0.weight"] == (1280, 2816)
    assert shapes["model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight"] == (640, 2048)
    assert shapes["model.diffusion_model.input_blocks.7.1.transformer_blocks.9.ff.net.2.weight"] == (1280, 5120)
    assert shapes["model.diffusion_model.input_blocks.4.1.proj_in.weight"] == (640, 640)  # linear, not 1x1 conv
    assert shapes["model.diffusion_model.output_blocks.2.2.conv.weight"] == (1280, 1280, 3, 3)
    assert shapes["conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc1.weight"] == (3072, 768)
    assert shapes["conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"] == (3840, 1280)
    assert shapes["conditioner.embedders.1.model.text_projection"] == (1280, 1280)
    assert shapes["conditioner.embedders.1.model.positional_embedding"] == (77, 1280)
    assert "model.diffusion_model.input_blocks.1.1.proj_in.weight" not in shapes  # SDXL's first block has no attention
    counts = {}
    for key, shape in shapes.items():
        part = next(p for p, prefix in family_named("sdxl").parts.items() if key.startswith(prefix))
        counts[part] = counts.get(part, 0) + torch.Size(shape).numel()
    # SDXL base 1.0's U-Net, VAE, CLIP ViT-L text model and OpenCLIP ViT-bigG text model (with projection)
    assert counts == {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
                      "text_encoder_2": 694_659_840}


def test_our_sgm_writer_is_the_inverse_of_diffusers_converters_at_sdxl_size():
    """diffusers -> SGM (ours) -> diffusers (diffusers' converters) gives back every key and shape."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from lrfind.models.config_dirs import sdxl_config_dir
    from lrfind.models.to_original import unet_to_original
    from lrfind.models.to_original_sdxl import OPEN_CLIP_PREFIX, open_clip_to_original

    folder = sdxl_config_dir()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet"))
        encoder = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder_2"))
    back = convert_ldm_unet_checkpoint(unet_to_original(unet.state_dict(), unet.config), dict(unet.config))
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in unet.state_dict().items()}
    back = convert_open_clip_checkpoint(encoder, open_clip_to_original(encoder.state_dict()), prefix=OPEN_CLIP_PREFIX)
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in encoder.state_dict().items()}


def synthetic_refiner(with_text_encoder: bool = True) -> dict:
    shapes = {"model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
              "model.diffusion_model.label_emb.0.0.weight": (1536, 2560),
              "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3)}
    if with_text_encoder:
        shapes["conditioner.embedders.0.model.token_embedding.weight"] = (49408, 1280)
    return shapes


def synthetic_sd2(with_text_encoder: bool = True) -> dict:
    shapes = {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
              "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
              "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3)}
    if with_text_encoder:
        shapes["cond_stage_model.model.token_embedding.weight"] = (49408, 1024)
    return shapes


@pytest.mark.parametrize("shapes, words", [
    (synthetic_refiner(), "this is an SDXL refiner checkpoint"),
    (synthetic_refiner(with_text_encoder=False), "this is an SDXL refiner checkpoint"),
    (synthetic_sd2(), "this is an SD 2.x checkpoint"),
    (synthetic_sd2(with_text_encoder=False), "this is an SD 2.x checkpoint"),
], ids=["refiner", "refiner-unet-only", "sd2", "sd2-unet-only"])
def test_refiner_and_sd2_headers_are_refused_with_one_line(shapes, words, tmp_path, capsys):
    path = save_safetensors(tmp_path / "other.safetensors", {k: torch.zeros(s) for k, s in shapes.items()})
    code, _, err = run_cli(capsys, "model", "info", str(path))
    assert_one_line_error(code, err, str(path), words, "not supported")


def test_a_refiner_folder_is_refused():
    with pytest.raises(ModelError, match="^refiner: an SDXL refiner .*not supported: pass an SDXL base"):
        detect_folder(REFINER_INDEX, "refiner")


@pytest.mark.parametrize("prefix, words", [
    ("conditioner.embedders.0.", "no first text encoder (CLIP ViT-L, conditioner.embedders.0.transformer.*)"),
    ("conditioner.embedders.1.", "no second text encoder (OpenCLIP ViT-bigG, conditioner.embedders.1.model.*)"),
])
def test_an_sdxl_file_missing_a_text_encoder_is_refused(prefix, words, sdxl_original, tmp_path, capsys):
    state = {k: v for k, v in sdxl_original.items() if not k.startswith(prefix)}
    path = save_safetensors(tmp_path / "partial.safetensors", state)
    code, _, err = run_cli(capsys, "model", "info", str(path))
    assert_one_line_error(code, err, str(path), "SDXL checkpoint has", words)
    with pytest.raises(ModelError, match=re.escape(words)):
        load_components(ModelConfig(model=str(path)), for_training=False)


def test_an_sdxl_folder_missing_a_text_encoder_is_refused(saved_sdxl, tmp_path, capsys):
    import shutil

    folder = tmp_path / "partial"
    shutil.copytree(saved_sdxl, folder)
    shutil.rmtree(folder / "text_encoder_2")
    code, _, err = run_cli(capsys, "model", "info", str(folder))
    assert_one_line_error(code, err, str(folder), "no text_encoder_2/ subfolder")


# --- tiny-sdxl -----------------------------------------------------------------------------------

def test_tiny_sdxl_is_the_sdxl_architecture_in_miniature(tiny_sdxl):
    unet, te1, te2 = tiny_sdxl.unet.config, tiny_sdxl.text_encoder, tiny_sdxl.text_encoder_2
    assert type(te1).__name__ == "CLIPTextModel" and type(te2).__name__ == "CLIPTextModelWithProjection"
    assert unet.addition_embed_type == "text_time" and tuple(unet.transformer_layers_per_block) == (1, 2)
    assert unet.cross_attention_dim == te1.config.hidden_size + te2.config.hidden_size
    assert unet.projection_class_embeddings_input_dim == 6 * unet.addition_time_embed_dim + te2.config.projection_dim
    assert tiny_sdxl.unet.add_embedding.linear_1.in_features == unet.projection_class_embeddings_input_dim
    assert len(tiny_sdxl.unet.down_blocks[1].attentions[0].transformer_blocks) == 2
    # SDXL's first level has no attention; tiny-sdxl's has one transformer there, so that a LoRA can
    # learn on the random model (lrfind/models/tiny_sdxl.py says why)
    assert len(tiny_sdxl.unet.down_blocks[0].attentions[0].transformer_blocks) == 1
    assert te1.config.vocab_size == te2.config.vocab_size == 49408
    assert tiny_sdxl.tokenizer("a cat").input_ids == tiny_sdxl.tokenizer_2("a cat").input_ids  # one BPE
    assert tiny_sdxl.tokenizer.pad_token_id == 49407 and tiny_sdxl.tokenizer_2.pad_token_id == 0  # SDXL's pads
    schedule = tiny_sdxl.noise_scheduler.config
    assert (schedule.beta_schedule, schedule.beta_start, schedule.beta_end, schedule.num_train_timesteps,
            schedule.prediction_type) == ("scaled_linear", 0.00085, 0.012, 1000, "epsilon")
    assert tiny_sdxl.family == "sdxl" and tiny_sdxl.vae.config.scaling_factor == 0.13025


def test_tiny_sdxl_is_deterministic_from_its_seed(tiny_sdxl):
    from lrfind.models.builtin import build_builtin

    torch.manual_seed(123)
    before = torch.rand(1)
    again, other = build_builtin("tiny-sdxl", 0), build_builtin("tiny-sdxl", 1)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # building leaves the caller's RNG alone
    assert_same_modules(again, tiny_sdxl)
    for part, module in tiny_sdxl.modules().items():
        assert not torch.equal(module.state_dict()[next(iter(module.state_dict()))],
                               other.modules()[part].state_dict()[next(iter(module.state_dict()))]), part


# --- round trips ---------------------------------------------------------------------------------

def test_model_save_writes_an_sdxl_folder_and_an_sgm_single_file(saved_sdxl):
    import json

    index = json.loads((saved_sdxl / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
        assert (saved_sdxl / part).is_dir(), part
    for tokenizer in ("tokenizer", "tokenizer_2"):
        assert (saved_sdxl / tokenizer / "vocab.json").is_file() and (saved_sdxl / tokenizer / "merges.txt").is_file()
    keys = header(saved_sdxl / "tiny-sdxl.safetensors")
    for prefix in ("model.diffusion_model.label_emb.0.", "first_stage_model.", "conditioner.embedders.0.transformer.text_model.",
                   "conditioner.embedders.1.model.transformer.resblocks."):
        assert any(k.startswith(prefix) for k in keys), prefix
    assert not any(k.startswith("cond_stage_model.") for k in keys)


@pytest.mark.parametrize("relative", ["", "tiny-sdxl.safetensors"], ids=["folder", "single-file"])
def test_folder_and_single_file_round_trips_are_bit_exact(relative, saved_sdxl, tiny_sdxl):
    source = saved_sdxl / relative if relative else saved_sdxl
    loaded = load_components(ModelConfig(model=str(source)), for_training=False)
    assert_same_modules(loaded, tiny_sdxl)
    assert loaded.family == "sdxl" and loaded.prediction_type == "epsilon"
    assert torch.equal(loaded.noise_scheduler.alphas_cumprod, tiny_sdxl.noise_scheduler.alphas_cumprod)
    for tokenizer in ("tokenizer", "tokenizer_2"):
        ours, theirs = getattr(loaded, tokenizer), getattr(tiny_sdxl, tokenizer)
        assert ours("a photo, of a cat", padding="max_length").input_ids == theirs("a photo, of a cat", padding="max_length").input_ids


def test_single_file_save_load_save_is_bit_exact(saved_sdxl, tmp_path):
    from safetensors.torch import load_file

    from lrfind.models.single_file import write_single_file

    first = saved_sdxl / "tiny-sdxl.safetensors"
    loaded = load_components(ModelConfig(model=str(first)), for_training=False)
    second = write_single_file(loaded, tmp_path / "again.safetensors")
    a, b = load_file(str(first)), load_file(str(second))
    assert a.keys() == b.keys()
    assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_diffusers_sdxl_pipeline_loads_the_saved_folder_and_runs_a_step(saved_sdxl):
    from diffusers import StableDiffusionXLPipeline

    pipeline = StableDiffusionXLPipeline.from_pretrained(str(saved_sdxl), local_files_only=True)
    result = pipeline("a photo of a cat", num_inference_steps=1, height=64, width=64, output_type="np",
                      generator=torch.Generator().manual_seed(0))
    assert result.images.shape == (1, 64, 64, 3) and bool(torch.isfinite(torch.from_numpy(result.images)).all())


# --- CLI and loading for training -------------------------------------------------------------------

def test_model_info_says_sdxl_tiny_sdxl_and_sizes(saved_sdxl, tiny_sdxl, capsys):
    sizes = {part: sum(p.numel() for p in module.parameters()) for part, module in tiny_sdxl.modules().items()}
    for source in ("tiny-sdxl", str(saved_sdxl), str(saved_sdxl / "tiny-sdxl.safetensors")):
        code, out, err = run_cli(capsys, "model", "info", source)
        assert code == 0, err
        assert "family: SDXL" in out and "architecture: tiny-sdxl" in out, out
        for part, count in sizes.items():
            assert f"parameters {part}: {count:,}" in out, (source, part, out)
        assert f"parameters total: {sum(sizes.values()):,}" in out


def test_sdxl_models_load_for_training(saved_sdxl):
    """SDXL trains now (tests/test_sdxl_training.py): every source loads with for_training on."""
    for source in ("tiny-sdxl", str(saved_sdxl), str(saved_sdxl / "tiny-sdxl.safetensors")):
        components = load_components(ModelConfig(model=source))
        assert components.family == "sdxl" and components.text_encoder_2 is not None
