"""Stable Diffusion 1.x: the family lrfind trains (and its tiny built-in models `tiny`, `tiny-pretrained`).

Single files are told apart from other families by the U-Net's `input_blocks.0.0` key and from each
other by three widths: the U-Net's first block, CLIP's hidden size and the VAE encoder's conv_in.
SD 2.x diffusers folders have the same layout (CLIPTextModel, 1024 wide) and load as this family at
a custom size, as before families existed; SD 2.x single files are refused (unsupported.py).
"""

from __future__ import annotations

from typing import Any, Mapping

from lrfind.errors import ModelError
from lrfind.models.config_dirs import sd15_config_dir, tiny_config_dir
from lrfind.models.families.family import ModelFamily, ModelVariant, Shapes
from lrfind.models.tiny import SD15_SCHEDULER_CONFIG
from lrfind.models.to_original import TEXT_ENCODER_PREFIX, UNET_PREFIX, VAE_PREFIX, sd1_to_original

CONV_IN_KEY = UNET_PREFIX + "input_blocks.0.0.weight"
ADDED_CONDITIONING_KEY = UNET_PREFIX + "label_emb.0.0.weight"  # SDXL's size/crop/pooled-text embedding
SDXL_TEXT_ENCODERS_PREFIX = "conditioner.embedders."
TOKEN_EMBEDDING_KEY = TEXT_ENCODER_PREFIX + "text_model.embeddings.token_embedding.weight"
VAE_CONV_IN_KEY = VAE_PREFIX + "encoder.conv_in.weight"


def claims_single_file(shapes: Shapes) -> bool:
    # SDXL files (sdxl.py) have the same U-Net prefix; their added conditioning or `conditioner.` encoders tell them apart.
    return (CONV_IN_KEY in shapes and ADDED_CONDITIONING_KEY not in shapes
            and not any(key.startswith(SDXL_TEXT_ENCODERS_PREFIX) for key in shapes))


def single_file_variant(shapes: Shapes, source: str) -> ModelVariant:
    """The variant of an SD 1.x-layout file, by its (U-Net, text encoder, VAE) widths; ModelError
    for a partial file, an inpainting/instruct U-Net or a size lrfind has no configs for."""
    if TOKEN_EMBEDDING_KEY not in shapes or VAE_CONV_IN_KEY not in shapes:
        missing = "text encoder" if TOKEN_EMBEDDING_KEY not in shapes else "VAE"
        raise ModelError(f"{source}: the checkpoint has no {missing} weights; pass a full SD 1.x model file")
    unet_channels, in_channels = shapes[CONV_IN_KEY][0], shapes[CONV_IN_KEY][1]
    if in_channels != 4:
        raise ModelError(
            f"{source}: the U-Net takes {in_channels} input channels (an inpainting or instruct model); "
            "only plain text-to-image SD 1.x models are supported"
        )
    widths = (unet_channels, shapes[TOKEN_EMBEDDING_KEY][1], shapes[VAE_CONV_IN_KEY][0])
    variant = FAMILY.variant_of(widths)
    if variant is None:
        raise ModelError(
            f"{source}: an SD 1.x-layout model of unknown size (U-Net {widths[0]}, text encoder {widths[1]}, "
            f"VAE {widths[2]} channels); supported: SD 1.x (320/768/128) and lrfind's tiny model"
        )
    return variant


def component_widths(components: Any) -> tuple[int, int, int]:
    return (
        components.unet.config.block_out_channels[0],
        components.text_encoder.config.hidden_size,
        components.vae.config.block_out_channels[0],
    )


# The components an SD 1.x (or 2.x) pipeline folder may list in model_index.json.
FOLDER_COMPONENTS = frozenset({"unet", "vae", "text_encoder", "tokenizer", "scheduler", "safety_checker",
                               "feature_extractor", "image_encoder"})


def claims_folder(index: Mapping[str, Any]) -> bool:
    """A diffusers Stable Diffusion pipeline with one text encoder (SDXL's have two) and no component
    SD 1.x lacks (a `text_encoder_3`, a `transformer`: another family's folder)."""
    others = [key for key, entry in index.items() if isinstance(entry, list) and key not in FOLDER_COMPONENTS
              and any(item is not None for item in entry)]
    return "XL" not in str(index.get("_class_name", "")) and "text_encoder_2" not in index and not others


FAMILY = ModelFamily(
    name="sd1",
    label="SD 1.x",
    example_file="v1-5-pruned-emaonly.safetensors",
    variants=(
        ModelVariant("sd1", (320, 768, 128), sd15_config_dir),
        ModelVariant("tiny-sd1", (32, 32, 32), tiny_config_dir),
    ),
    claims_single_file=claims_single_file,
    single_file_variant=single_file_variant,
    component_widths=component_widths,
    claims_folder=claims_folder,
    parts={"unet": UNET_PREFIX, "vae": VAE_PREFIX, "text_encoder": "cond_stage_model."},
    text_encoder_classes={"text_encoder": "CLIPTextModel"},
    pipeline_class="StableDiffusionPipeline",
    to_original=sd1_to_original,
    trainable=True,
    noise_schedule=SD15_SCHEDULER_CONFIG,  # SD 1.5's DDPM schedule (scaled_linear 0.00085..0.012)
    single_file_prediction_type="epsilon",  # an SD 1.x file does not say; almost all predict the noise
    base_model_version="sd_v1",
    kohya_v2=False,
    modelspec_architecture="stable-diffusion-v1/lora",
    kohya_train_script="train_network.py",
)
