"""Models lrfind recognises but does not load, and files that are no base model at all.

Checked before any supported family (lrfind.models.families.registry), so the message names what
the file is: the SDXL refiner, SD 2.x, SD3, LoRA files. Detection reads tensor names and shapes
(a single file's header) or model_index.json only.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from lrfind.models.families.family import Shapes

REFINER = ("an SDXL refiner checkpoint (one OpenCLIP text encoder; it refines the SDXL base's images, img2img); "
           "refiners are not supported: pass an SDXL base model such as sd_xl_base_1.0.safetensors")
SD2 = "an SD 2.x checkpoint (OpenCLIP text encoder); SD 2.x is not supported yet (use an SD 1.x or SDXL model)"
LORA = "a LoRA file, not a base model; pass the Stable Diffusion checkpoint it was trained on"
# Single-file key prefix -> what to tell the user.
SINGLE_FILE_PREFIXES = (
    ("conditioner.embedders.0.model.", REFINER),  # the refiner's only encoder; the base has CLIP ViT-L there
    ("cond_stage_model.model.", SD2),
    ("model.diffusion_model.joint_blocks.", "an SD3 checkpoint; SD3 is not supported (use an SD 1.x or SDXL model)"),
    ("lora_unet_", LORA),
    ("lora_te_", LORA),
    ("lora_te1_", LORA),
    ("lora_te2_", LORA),
)
# U-Net keys that tell a file without its text encoder apart.
ADDED_CONDITIONING_KEY = "model.diffusion_model.label_emb.0.0.weight"  # [time width, adm width]
REFINER_ADM_WIDTH = 2560  # 5 x 256 size/crop/aesthetic numbers + 1280 pooled; the base has 2816
CROSS_ATTENTION_KEY = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
SD2_CONTEXT_WIDTH = 1024  # OpenCLIP ViT-H's hidden size; SD 1.x's CLIP ViT-L has 768


def single_file_refusal(shapes: Shapes) -> Optional[str]:
    """What the file is, when it is one of the kinds above; None otherwise."""
    for prefix, description in SINGLE_FILE_PREFIXES:
        if any(key.startswith(prefix) for key in shapes):
            return description
    if ADDED_CONDITIONING_KEY in shapes:
        adm = shapes[ADDED_CONDITIONING_KEY]
        return REFINER if len(adm) == 2 and adm[1] == REFINER_ADM_WIDTH else None
    context = shapes.get(CROSS_ATTENTION_KEY)
    if context is not None and context[-1] == SD2_CONTEXT_WIDTH:
        return SD2
    return None


def _declared(index: Mapping[str, Any], part: str) -> bool:
    # model_index.json lists a missing component as [null, null]
    entry = index.get(part)
    return isinstance(entry, (list, tuple)) and any(item is not None for item in entry)


def folder_refusal(index: Mapping[str, Any]) -> Optional[str]:
    """What a diffusers folder is, from its model_index.json, when it is a kind above."""
    pipeline = str(index.get("_class_name", ""))
    if ("XL" in pipeline or "text_encoder_2" in index) and not _declared(index, "text_encoder"):
        return (f"an SDXL refiner ({pipeline} with no text_encoder: one OpenCLIP encoder, img2img on the base's "
                "images); refiners are not supported: pass an SDXL base model folder")
    return None
