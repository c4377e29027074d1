"""Stable Diffusion XL (base 1.0 and models fine-tuned from it: Pony, Illustrious, NoobAI, ...).

Two text encoders (CLIP ViT-L as `text_encoder`, OpenCLIP ViT-bigG with its projection as
`text_encoder_2`), a U-Net with added size/crop/pooled-text conditioning. Single files are the SGM
layout of sd_xl_base_1.0.safetensors, told apart from SD 1.x by that added conditioning
(`label_emb`), and from each other by four widths: the U-Net's first block, both encoders' hidden
sizes and the VAE encoder's conv_in. The refiner is refused before this module is asked
(unsupported.py). lrfind loads, describes and saves SDXL; its training is later work (issue 16).
"""

from __future__ import annotations

from typing import Any, Mapping

from lrfind.errors import ModelError
from lrfind.models.config_dirs import sdxl_config_dir, tiny_sdxl_config_dir
from lrfind.models.families.family import ModelFamily, ModelVariant, Shapes
from lrfind.models.tiny_sdxl import SDXL_SCHEDULER_CONFIG
from lrfind.models.to_original_sdxl import CLIP_L_PREFIX, OPEN_CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX, sdxl_to_original

CONV_IN_KEY = UNET_PREFIX + "input_blocks.0.0.weight"
# The first linear of the added conditioning (diffusers' add_embedding): [time-embedding width, adm width].
ADDED_CONDITIONING_KEY = UNET_PREFIX + "label_emb.0.0.weight"
CLIP_L_TOKEN_KEY = CLIP_L_PREFIX + "text_model.embeddings.token_embedding.weight"
OPEN_CLIP_TOKEN_KEY = OPEN_CLIP_PREFIX + "token_embedding.weight"
VAE_CONV_IN_KEY = VAE_PREFIX + "encoder.conv_in.weight"
TEXT_ENCODERS_PREFIX = "conditioner.embedders."
EXAMPLE_FILE = "sd_xl_base_1.0.safetensors"
# What a full SDXL file holds besides its U-Net, as messages name it.
REQUIRED_PARTS = (
    (CLIP_L_TOKEN_KEY, f"first text encoder (CLIP ViT-L, {CLIP_L_PREFIX}*)"),
    (OPEN_CLIP_TOKEN_KEY, f"second text encoder (OpenCLIP ViT-bigG, {OPEN_CLIP_PREFIX}*)"),
    (VAE_CONV_IN_KEY, f"VAE ({VAE_PREFIX}*)"),
)


def claims_single_file(shapes: Shapes) -> bool:
    """An SGM-layout U-Net: its added conditioning, or SDXL's `conditioner.embedders.` text encoders beside it."""
    return CONV_IN_KEY in shapes and (ADDED_CONDITIONING_KEY in shapes
                                      or any(key.startswith(TEXT_ENCODERS_PREFIX) for key in shapes))


def single_file_variant(shapes: Shapes, source: str) -> ModelVariant:
    """The variant of an SGM-layout SDXL file by its widths; ModelError for a file missing a text
    encoder or the VAE, an inpainting U-Net or a size lrfind has no configs for."""
    missing = [label for key, label in REQUIRED_PARTS if key not in shapes]
    if missing:
        raise ModelError(f"{source}: the SDXL checkpoint has no {' and no '.join(missing)} weights; "
                         f"pass a full SDXL model file such as {EXAMPLE_FILE}")
    in_channels = shapes[CONV_IN_KEY][1]
    if in_channels != 4:
        raise ModelError(f"{source}: the SDXL U-Net takes {in_channels} input channels (an inpainting model); "
                         "only plain text-to-image SDXL models are supported")
    widths = (shapes[CONV_IN_KEY][0], shapes[CLIP_L_TOKEN_KEY][1], shapes[OPEN_CLIP_TOKEN_KEY][1],
              shapes[VAE_CONV_IN_KEY][0])
    variant = FAMILY.variant_of(widths)
    if variant is None:
        raise ModelError(
            f"{source}: an SDXL-layout model of unknown size (U-Net {widths[0]}, text encoders {widths[1]} and "
            f"{widths[2]}, VAE {widths[3]} channels); supported: SDXL (320/768/1280/128) and lrfind's tiny-sdxl"
        )
    return variant


def component_widths(components: Any) -> tuple[int, int, int, int]:
    return (
        components.unet.config.block_out_channels[0],
        components.text_encoder.config.hidden_size,
        components.text_encoder_2.config.hidden_size,
        components.vae.config.block_out_channels[0],
    )


def claims_folder(index: Mapping[str, Any]) -> bool:
    """A diffusers SDXL pipeline (StableDiffusionXLPipeline, or its Img2Img with both encoders)."""
    return "XL" in str(index.get("_class_name", "")) or "text_encoder_2" in index


FAMILY = ModelFamily(
    name="sdxl",
    label="SDXL",
    example_file=EXAMPLE_FILE,
    variants=(
        ModelVariant("sdxl", (320, 768, 1280, 128), sdxl_config_dir),
        ModelVariant("tiny-sdxl", (32, 32, 64, 32), tiny_sdxl_config_dir),
    ),
    claims_single_file=claims_single_file,
    single_file_variant=single_file_variant,
    component_widths=component_widths,
    claims_folder=claims_folder,
    parts={"unet": UNET_PREFIX, "vae": VAE_PREFIX, "text_encoder": "conditioner.embedders.0.",
           "text_encoder_2": "conditioner.embedders.1."},
    text_encoder_classes={"text_encoder": "CLIPTextModel", "text_encoder_2": "CLIPTextModelWithProjection"},
    pipeline_class="StableDiffusionXLPipeline",
    to_original=sdxl_to_original,
    trainable=True,
    noise_schedule=SDXL_SCHEDULER_CONFIG,
    single_file_prediction_type="epsilon",  # as SDXL base; v-prediction fine-tunes do not say so in the file
    base_model_version="sdxl_base_v1-0",
    kohya_v2=False,
    modelspec_architecture="stable-diffusion-xl-v1-base/lora",
    kohya_train_script="sdxl_train_network.py",
)
