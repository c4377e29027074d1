"""Families lrfind recognises but does not train, and files that are no base model at all.

Checked before any supported family (lrfind.models.families.registry), so the message names what
the file is. When a family gets its module (e.g. sdxl.py), its lines here go.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

# Single-file key prefix -> what to tell the user.
SINGLE_FILE_PREFIXES = (
    ("conditioner.embedders.", "an SDXL checkpoint; SDXL is not supported yet (use an SD 1.x model)"),
    ("cond_stage_model.model.", "an SD 2.x checkpoint (OpenCLIP text encoder); SD 2.x is not supported yet (use an SD 1.x model)"),
    ("model.diffusion_model.joint_blocks.", "an SD3 checkpoint; SD3 is not supported (use an SD 1.x model)"),
    ("lora_unet_", "a LoRA file, not a base model; pass the Stable Diffusion checkpoint it was trained on"),
    ("lora_te_", "a LoRA file, not a base model; pass the Stable Diffusion checkpoint it was trained on"),
)


def single_file_refusal(keys) -> Optional[str]:
    """What the file is, when it is one of the families above; None otherwise."""
    for prefix, description in SINGLE_FILE_PREFIXES:
        if any(key.startswith(prefix) for key in keys):
            return description
    return None


def folder_refusal(index: Mapping[str, Any]) -> Optional[str]:
    """What a diffusers folder is, from its model_index.json, when it is a family above."""
    pipeline = str(index.get("_class_name", ""))
    if "XL" in pipeline or "text_encoder_2" in index:
        return f"an SDXL model ({pipeline}); SDXL is not supported yet (use an SD 1.x model)"
    return None
