"""The built-in `tiny-sdxl` model: the SDXL architecture in miniature, random init from a seed.

What makes SDXL SDXL, kept at tiny widths: attention blocks that stack
`transformer_layers_per_block` transformers (1, 2 here; SDXL: 2, 10 in its two attention levels),
linear proj_in/proj_out, the `text_time` added conditioning (six size/crop numbers embedded at
`addition_time_embed_dim` each, plus the second encoder's pooled, projected output), cross-attention
over both encoders' hidden states concatenated (32 + 64 = 96 wide; SDXL: 768 + 1280 = 2048); a
CLIPTextModel and a CLIPTextModelWithProjection (gelu, as OpenCLIP bigG) with the real 49,408-token
vocabulary; the tiny 8x VAE with SDXL's latent scale; SDXL's (= SD 1.5's) noise schedule.
The two encoders differ in width on purpose: diffusers' single-file loader tells them apart by it,
and a projection narrower than the encoder (48 < 64) makes a transposed `text_projection` show.

One deliberate difference: SDXL's first, full-resolution level has no attention; tiny-sdxl's has.
kohya's LoRA adapts only attention blocks (Transformer2DModel), and on a random-init model the loss
is the per-pixel noise, which only full-resolution layers can predict: with SDXL's layout a LoRA
could reach 4x4 features only, learned next to nothing (held-out loss 1.094 after 150 Prodigy
steps) and Prodigy's d stayed at d0 for 120+ steps; with attention at full resolution the same probe
plateaus by step ~80 (d*lr 0.012, loss 0.51), as on `tiny`. The same swap on `tiny` (attention
moved to its lower level) stalls it the same way; refitting conv_out to predict the noise did not
help (the low-resolution share stays tiny). A trained SDXL's full-resolution path already denoises,
so its LoRA has that share to learn; a random tiny model has not. Measurements: docs/models.md.
"""

from __future__ import annotations

from lrfind.models.components import SDComponents
from lrfind.models.tiny import SD15_SCHEDULER_CONFIG, TINY_TEXT_ENCODER_CONFIG, TINY_VAE_CONFIG
from lrfind.models.tokenizer import get_clip_tokenizer, get_open_clip_tokenizer

NAME = "tiny-sdxl"
TINY_SDXL_TIME_EMBED_DIM = 8  # per size/crop number (SDXL: 256)
TINY_SDXL_TEXT_ENCODER_CONFIG = dict(TINY_TEXT_ENCODER_CONFIG)  # CLIP ViT-L's stand-in: tiny's encoder
TINY_SDXL_TEXT_ENCODER_2_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 48,
    "hidden_act": "gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 0,  # OpenCLIP pads with "!" (id 0), as SDXL's tokenizer_2 does
}
TINY_SDXL_UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    # attention at both levels (SDXL: none at the first): the module docstring says why
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "transformer_layers_per_block": [1, 2],
    "attention_head_dim": [2, 4],  # diffusers' SDXL config names the head counts so (SDXL: 5, 10, 20)
    "use_linear_projection": True,
    "cross_attention_dim": TINY_SDXL_TEXT_ENCODER_CONFIG["hidden_size"] + TINY_SDXL_TEXT_ENCODER_2_CONFIG["hidden_size"],
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TINY_SDXL_TIME_EMBED_DIM,
    # 6 numbers (original size, crop top-left, target size) + the pooled text embedding
    "projection_class_embeddings_input_dim": 6 * TINY_SDXL_TIME_EMBED_DIM + TINY_SDXL_TEXT_ENCODER_2_CONFIG["projection_dim"],
    "norm_num_groups": 32,
}
TINY_SDXL_VAE_CONFIG = {**TINY_VAE_CONFIG, "scaling_factor": 0.13025, "force_upcast": True}  # SDXL VAE's values
# SDXL trains on SD 1.5's schedule: scaled_linear betas 0.00085..0.012, 1000 steps, epsilon.
SDXL_SCHEDULER_CONFIG = dict(SD15_SCHEDULER_CONFIG)


def build_tiny_sdxl(seed: int = 0) -> SDComponents:
    """Build tiny-sdxl; the same seed always gives bit-identical weights."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_SDXL_UNET_CONFIG)
        vae = AutoencoderKL(**TINY_SDXL_VAE_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_SDXL_TEXT_ENCODER_CONFIG))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**TINY_SDXL_TEXT_ENCODER_2_CONFIG))
    for module in (unet, vae, text_encoder, text_encoder_2):
        module.eval().requires_grad_(False)
    return SDComponents(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=get_clip_tokenizer(),
        noise_scheduler=DDPMScheduler(**SDXL_SCHEDULER_CONFIG),
        name=NAME,
        prediction_type="epsilon",
        family="sdxl",
        text_encoder_2=text_encoder_2,
        tokenizer_2=get_open_clip_tokenizer(),
    )
