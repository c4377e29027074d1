"""Model families (lrfind.models.families): SD 1.x in one module, detection unchanged, one more in one place.

The values below are what single_file.py (SD1_VARIANTS, UNSUPPORTED_FAMILIES), models/export.py
(COMPONENT_PREFIXES), models/loading.py (SD 1.5's schedule, "epsilon" for single files) and
network/metadata.py (SD1_BASE_MODEL_VERSION, MODELSPEC_ARCHITECTURE_SD1_LORA, ss_v2 False) held
before the registry (lrfind at 206ce58).
"""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from lrfind.errors import ModelError
from lrfind.models.config_dirs import sd15_config_dir, tiny_config_dir
from lrfind.models.families import (ModelFamily, ModelVariant, detect_folder, detect_single_file, family_named,
                                    model_families, register_family, registry, unsupported, variant_named)
from lrfind.models.tiny import SD15_SCHEDULER_CONFIG

OLD_VARIANTS = {"sd1": ((320, 768, 128), sd15_config_dir), "tiny-sd1": ((32, 32, 32), tiny_config_dir)}
OLD_PARTS = {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text_encoder": "cond_stage_model."}
OLD_KOHYA = {"ss_v2": "False", "ss_base_model_version": "sd_v1", "modelspec.architecture": "stable-diffusion-v1/lora"}

SD2_FOLDER_INDEX = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.8.0",
                    "text_encoder": ["transformers", "CLIPTextModel"], "unet": ["diffusers", "UNet2DConditionModel"],
                    "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"]}
SDXL_FOLDER_INDEX = {"_class_name": "StableDiffusionXLPipeline", "text_encoder_2": ["transformers", "x"]}


def sd1_shapes(unet=320, text=768, vae=128, in_channels=4) -> dict:
    return {"model.diffusion_model.input_blocks.0.0.weight": (unet, in_channels, 3, 3),
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, text),
            "first_stage_model.encoder.conv_in.weight": (vae, 3, 3, 3)}


def test_sd1_keeps_the_old_variants_and_values():
    assert [f.name for f in model_families()] == ["sd1", "sdxl"]  # SD 1.x first: detection and message order
    sd1 = family_named("sd1")
    assert {v.name: (v.widths, v.config_dir) for v in sd1.variants} == OLD_VARIANTS
    assert dict(sd1.parts) == OLD_PARTS
    assert dict(sd1.noise_schedule) == SD15_SCHEDULER_CONFIG and sd1.single_file_prediction_type == "epsilon"
    for item in fields(ModelFamily):
        assert getattr(sd1, item.name) is not None


def test_kohya_metadata_of_an_sd1_lora_is_unchanged():
    from lrfind.network.metadata import modelspec_metadata

    sd1 = family_named("sd1")
    assert (str(sd1.kohya_v2), sd1.base_model_version) == (OLD_KOHYA["ss_v2"], OLD_KOHYA["ss_base_model_version"])
    spec = modelspec_metadata(title="t", timestamp=0, resolution=512)
    assert spec["modelspec.architecture"] == OLD_KOHYA["modelspec.architecture"]


@pytest.mark.parametrize("widths, variant", [((320, 768, 128), "sd1"), ((32, 32, 32), "tiny-sd1")])
def test_single_files_are_detected_as_before(widths, variant):
    family, found = detect_single_file(sd1_shapes(*widths), "m.safetensors")
    assert (family.name, found.name) == ("sd1", variant)
    assert variant_named(variant) == (family, found)


@pytest.mark.parametrize("shapes, words", [
    ({"cond_stage_model.model.token_embedding.weight": (16, 1024), **sd1_shapes()}, "an SD 2.x checkpoint"),
    ({"conditioner.embedders.0.x": (1,), **sd1_shapes()}, "the SDXL checkpoint has no first text encoder"),
    ({"lora_unet_x.lora_down.weight": (4, 8)}, "a LoRA file, not a base model"),
    ({"x": (1,)}, "not a Stable Diffusion 1.x or SDXL checkpoint (no model.diffusion_model.* U-Net weights)"),
    (sd1_shapes(in_channels=9), "9 input channels (an inpainting or instruct model)"),
    (sd1_shapes(unet=64), "an SD 1.x-layout model of unknown size (U-Net 64, text encoder 768, VAE 128 channels)"),
])
def test_other_single_files_get_the_old_messages(shapes, words):
    with pytest.raises(ModelError, match="^m.safetensors: ") as caught:
        detect_single_file(shapes, "m.safetensors")
    assert words in str(caught.value)


def test_the_tiny_built_in_model_is_sd1_tiny():
    from lrfind.models.builtin import build_builtin

    components = build_builtin("tiny", 0)
    family = family_named(components.family)
    assert family.name == "sd1" and family.variant_of(family.component_widths(components)).name == "tiny-sd1"


def test_an_sd2_diffusers_folder_loads_as_sd1_of_custom_size_as_before():
    # SD 2.x folders ship CLIPTextModel (1024 wide): the SD 1.x layout; `model info` says "sd1-layout (custom size)"
    family = detect_folder(SD2_FOLDER_INDEX, "sd2")
    assert family.name == "sd1" and family.variant_of((320, 1024, 128)) is None
    assert detect_folder({**SDXL_FOLDER_INDEX, "text_encoder": ["transformers", "CLIPTextModel"]}, "xl").name == "sdxl"
    with pytest.raises(ModelError, match="^xl: an SDXL refiner .*not supported"):  # text_encoder_2 only
        detect_folder(SDXL_FOLDER_INDEX, "xl")


# --- one more family, in one module ----------------------------------------------------------------

@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    # a new family's module takes its lines out of unsupported.py (here: a third text encoder)
    monkeypatch.setattr(unsupported, "folder_refusal", lambda index: None)
    sd1 = family_named("sd1")

    def variant(shapes, source):
        return toy.variants[0]

    toy = replace(sd1, name="toyxl", label="Toy XL", claims_single_file=lambda shapes: "toy.unet.conv_in.weight" in shapes,
                  variants=(ModelVariant("toyxl-base", (1, 2), sd15_config_dir),), single_file_variant=variant,
                  claims_folder=lambda index: "text_encoder_3" in index,
                  base_model_version="toy_v1", kohya_v2=True, modelspec_architecture="toy-xl/lora")
    return register_family(toy)


def test_a_new_family_is_detected_and_named_in_kohyas_metadata(toy_family):
    from lrfind.network.metadata import modelspec_metadata

    family, variant = detect_single_file({"toy.unet.conv_in.weight": (1,)}, "toy.safetensors")
    assert (family, variant.name) == (toy_family, "toyxl-base")
    assert detect_folder({"_class_name": "ToyPipeline", "text_encoder_3": ["x", "y"]}, "toy") is toy_family
    assert detect_folder(SD2_FOLDER_INDEX, "sd2").name == "sd1"
    assert detect_single_file(sd1_shapes(), "m")[0].name == "sd1"  # SD 1.x still found first
    spec = modelspec_metadata(title="t", timestamp=0, resolution=512, model_family="toyxl")
    assert spec["modelspec.architecture"] == "toy-xl/lora"
    with pytest.raises(ModelError, match="'toyxl' is taken"):
        register_family(toy_family)
