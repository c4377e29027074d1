"""Convert diffusers-format weights to the original Stable Diffusion single-file layout.

The original (CompVis / "ldm") layout is what `v1-5-pruned-emaonly.safetensors`, A1111, ComfyUI and
kohya's `.safetensors` loaders read: `model.diffusion_model.*` (U-Net), `first_stage_model.*` (VAE)
and `cond_stage_model.transformer.text_model.*` (CLIP text encoder).

diffusers ships only the other direction (`diffusers.loaders.single_file_utils`). Its repo has a
script for this direction (scripts/convert_diffusers_to_original_stable_diffusion.py), but that is
not importable and is hard-wired to SD 1.5's four blocks; this module derives the key map from the
component's config instead, so the tiny model round-trips too. The top-level key tables are
diffusers' own (DIFFUSERS_TO_LDM_MAPPING), so both directions share them.
"""

from __future__ import annotations

from typing import Any, Mapping

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_ENCODER_PREFIX = "cond_stage_model.transformer."

# diffusers name -> original name inside a U-Net resnet block
UNET_RESNET_RENAMES = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
VAE_RESNET_RENAMES = (("conv_shortcut", "nin_shortcut"),)
# diffusers name -> original name inside the VAE's mid-block attention (a 1x1-conv attention there)
VAE_ATTENTION_RENAMES = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def _ldm_tables() -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    return DIFFUSERS_TO_LDM_MAPPING


def _has_attention(block_types) -> list[bool]:
    return [block_type.startswith("CrossAttn") for block_type in block_types]


def unet_block_map(config: Mapping[str, Any]) -> list[tuple[str, str, tuple]]:
    """(diffusers prefix, original prefix, renames inside) for every block of a U-Net config.

    The original layout numbers its blocks flat: input_blocks.0 is conv_in, then per down block
    `layers_per_block` entries (resnet, attention) and one downsampler entry (except the last);
    output_blocks hold `layers_per_block + 1` entries per up block, the last of which carries the
    upsampler after its resnet (and attention).
    """
    n_blocks = len(config["block_out_channels"])
    per_block = int(config["layers_per_block"])
    down_attention = _has_attention(config["down_block_types"])
    up_attention = _has_attention(config["up_block_types"])
    entries: list[tuple[str, str, tuple]] = []
    index = 1
    for i in range(n_blocks):
        for j in range(per_block):
            entries.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{index}.0.", UNET_RESNET_RENAMES))
            if down_attention[i]:
                entries.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{index}.1.", ()))
            index += 1
        if i < n_blocks - 1:
            entries.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{index}.0.op.", ()))
            index += 1
    index = 0
    for i in range(n_blocks):
        for j in range(per_block + 1):
            entries.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{index}.0.", UNET_RESNET_RENAMES))
            if up_attention[i]:
                entries.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{index}.1.", ()))
            index += 1
        if i < n_blocks - 1:
            slot = 2 if up_attention[i] else 1
            entries.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{index - 1}.{slot}.", ()))
    entries += [
        ("mid_block.resnets.0.", "middle_block.0.", UNET_RESNET_RENAMES),
        ("mid_block.attentions.0.", "middle_block.1.", ()),
        ("mid_block.resnets.1.", "middle_block.2.", UNET_RESNET_RENAMES),
    ]
    return entries


def vae_block_map(config: Mapping[str, Any]) -> list[tuple[str, str, tuple]]:
    """(diffusers prefix, original prefix, renames inside) for every block of an AutoencoderKL.

    The original decoder numbers its up blocks from the lowest resolution upwards in reverse.
    """
    n_blocks = len(config["block_out_channels"])
    per_block = int(config["layers_per_block"])
    entries: list[tuple[str, str, tuple]] = []
    for i in range(n_blocks):
        for j in range(per_block):
            entries.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.", VAE_RESNET_RENAMES))
        if i < n_blocks - 1:
            entries.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.", ()))
        original_up = n_blocks - 1 - i
        for j in range(per_block + 1):
            entries.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{original_up}.block.{j}.", VAE_RESNET_RENAMES))
        if i < n_blocks - 1:
            entries.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{original_up}.upsample.", ()))
    for part in ("encoder", "decoder"):
        for k in range(2):
            entries.append((f"{part}.mid_block.resnets.{k}.", f"{part}.mid.block_{k + 1}.", VAE_RESNET_RENAMES))
        entries.append((f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", VAE_ATTENTION_RENAMES))
    return entries


def _rename(key: str, exact: Mapping[str, str], blocks: list[tuple[str, str, tuple]], what: str) -> str:
    if key in exact:
        return exact[key]
    for diffusers_prefix, original_prefix, renames in blocks:
        if key.startswith(diffusers_prefix):
            rest = key[len(diffusers_prefix):]
            for new, old in renames:
                if rest.startswith(new):
                    rest = old + rest[len(new):]
                    break
            return original_prefix + rest
    # Every key of an SD 1.x component is covered; one that is not means an unsupported variant.
    raise ValueError(f"no original-layout name for {what} weight {key!r}")


def unet_layer_map(config: Mapping[str, Any]) -> dict[str, str]:
    """diffusers weight key -> original key of the U-Net's layers outside every block: conv_in, the
    time embedding, conv_norm_out, conv_out (and SDXL's added embedding: `label_emb`)."""
    exact = dict(_ldm_tables()["unet"]["layers"])
    if config.get("addition_embed_type") == "text_time":  # SDXL's size/crop and pooled-text embedding
        exact.update(_ldm_tables()["unet"]["addition_embed_type"])
    return exact


def unet_to_original(state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    exact = unet_layer_map(config)
    blocks = unet_block_map(config)
    return {UNET_PREFIX + _rename(key, exact, blocks, "U-Net"): value for key, value in state_dict.items()}


def vae_to_original(state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    exact = _ldm_tables()["vae"]
    blocks = vae_block_map(config)
    converted = {}
    for key, value in state_dict.items():
        original = _rename(key, exact, blocks, "VAE")
        # The original VAE attention projections are 1x1 convolutions; diffusers stores them as
        # linear layers (diffusers' conv_attn_to_linear squeezes them on the way in).
        if ".mid.attn_1." in original and original.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        converted[VAE_PREFIX + original] = value
    return converted


def text_encoder_to_original(state_dict: Mapping[str, Any], prefix: str = TEXT_ENCODER_PREFIX) -> dict[str, Any]:
    """CLIPTextModel weights under `prefix` + `text_model.` (SD 1.x: `cond_stage_model.transformer.`).

    transformers >= 5.6 dropped the `text_model.` level from CLIPTextModel's state dict; the
    original layout (and older transformers, which kohya pins) has it, so add it where missing.
    """
    converted = {}
    for key, value in state_dict.items():
        if key == "text_model.embeddings.position_ids" or key == "embeddings.position_ids":
            continue  # a constant buffer, not a weight; loaders rebuild it
        inner = key if key.startswith("text_model.") else "text_model." + key
        converted[prefix + inner] = value
    return converted


def sd1_to_original(modules: Mapping[str, Any]) -> dict[str, Any]:
    """One original-layout state dict of an SD 1.x model's {part: module} (tensors as they are, meta ones included)."""
    unet, vae, text_encoder = modules["unet"], modules["vae"], modules["text_encoder"]
    state: dict[str, Any] = {}
    state.update(unet_to_original(unet.state_dict(), unet.config))
    state.update(vae_to_original(vae.state_dict(), vae.config))
    state.update(text_encoder_to_original(text_encoder.state_dict()))
    return state
