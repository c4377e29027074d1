"""Convert diffusers-format SDXL weights to the original (SGM) single-file layout.

The layout of `sd_xl_base_1.0.safetensors` (and Pony, Illustrious, ...): `model.diffusion_model.*`
(U-Net, with the size/crop/pooled-text embedding as `label_emb.0.*`), `first_stage_model.*` (VAE),
`conditioner.embedders.0.transformer.text_model.*` (CLIP ViT-L, transformers' own names) and
`conditioner.embedders.1.model.*` (OpenCLIP ViT-bigG in open_clip's names: fused `in_proj`
attention weights, `text_projection` stored as the matrix that multiplies, i.e. transposed).

U-Net and VAE go through lrfind.models.to_original (derived from each config). The OpenCLIP names
are diffusers' own table (DIFFUSERS_TO_LDM_MAPPING["openclip"]) read backwards, so loading
(diffusers' convert_open_clip_checkpoint) and writing share it.
"""

from __future__ import annotations

from typing import Any, Mapping

from lrfind.models.to_original import UNET_PREFIX, VAE_PREFIX, text_encoder_to_original, unet_to_original, vae_to_original

CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
# The refiner's one text encoder (OpenCLIP ViT-bigG) sits where the base's CLIP ViT-L does.
REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."
LAYER_PREFIX = "text_model.encoder.layers."
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj")  # open_clip's in_proj stacks them in this order


def _openclip_tables() -> tuple[dict[str, str], list[tuple[str, str]]]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    table = DIFFUSERS_TO_LDM_MAPPING["openclip"]
    # The per-layer renames (diffusers piece -> open_clip piece); the whole-key entries are in "layers".
    renames = [(new, old) for new, old in table["transformer"].items() if not new.startswith("transformer.")]
    return dict(table["layers"]), renames


def _layer_key(key: str, renames: list[tuple[str, str]]) -> str:
    # "text_model.encoder.layers.3.mlp.fc1.weight" -> "transformer.resblocks.3.mlp.c_fc.weight"
    for new, old in renames:
        key = key.replace(new, old)
    return "transformer." + key


def open_clip_to_original(state_dict: Mapping[str, Any], prefix: str = OPEN_CLIP_PREFIX) -> dict[str, Any]:
    """CLIPTextModelWithProjection weights in open_clip's layout under `prefix`."""
    whole_keys, renames = _openclip_tables()
    converted: dict[str, Any] = {}
    for key, value in state_dict.items():
        if key.endswith("position_ids"):
            continue  # a constant buffer, not a weight
        if key in whole_keys:
            converted[prefix + whole_keys[key]] = value.T if key == "text_projection.weight" else value
            continue
        if not key.startswith(LAYER_PREFIX):
            raise ValueError(f"no original-layout name for OpenCLIP text-encoder weight {key!r}")
        projection = next((p for p in ATTENTION_PROJECTIONS if f".self_attn.{p}." in key), None)
        if projection is None:
            converted[prefix + _layer_key(key, renames)] = value
    converted.update(_fused_attention(state_dict, prefix, renames))
    return converted


def _fused_attention(state_dict: Mapping[str, Any], prefix: str, renames: list[tuple[str, str]]) -> dict[str, Any]:
    """open_clip's `attn.in_proj_weight` / `in_proj_bias`: q, k and v stacked along the output rows."""
    import torch

    fused = {}
    for key in state_dict:
        if not (key.startswith(LAYER_PREFIX) and ".self_attn.q_proj." in key):
            continue
        kind = key.rsplit(".", 1)[1]  # weight or bias
        parts = [state_dict[key.replace(".q_proj.", f".{p}.")] for p in ATTENTION_PROJECTIONS]
        layer = _layer_key(key.split(".self_attn.")[0], renames)
        fused[f"{prefix}{layer}.attn.in_proj_{kind}"] = torch.cat(parts, dim=0)
    return fused


def sdxl_to_original(modules: Mapping[str, Any]) -> dict[str, Any]:
    """One SGM-layout state dict of an SDXL model's {part: module} (tensors as they are, meta ones included)."""
    unet, vae = modules["unet"], modules["vae"]
    state: dict[str, Any] = {}
    state.update(unet_to_original(unet.state_dict(), unet.config))
    state.update(vae_to_original(vae.state_dict(), vae.config))
    state.update(text_encoder_to_original(modules["text_encoder"].state_dict(), CLIP_L_PREFIX))
    state.update(open_clip_to_original(modules["text_encoder_2"].state_dict()))
    return state


__all__ = ["CLIP_L_PREFIX", "OPEN_CLIP_PREFIX", "REFINER_OPEN_CLIP_PREFIX", "UNET_PREFIX", "VAE_PREFIX",
           "open_clip_to_original", "sdxl_to_original"]
