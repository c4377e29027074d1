"""The built-in `tiny` model: Stable Diffusion 1.x architecture, small, random init from a seed.

Same component classes and wiring as SD 1.5 (UNet2DConditionModel with cross-attention blocks,
an 8x-downsampling AutoencoderKL, a CLIP text encoder with the real 49,408-token vocabulary, the
SD 1.5 DDPM noise schedule), scaled down so that a LoRA training step takes milliseconds on CPU.
Tests and the demo use it; nothing is downloaded.
"""

from __future__ import annotations

from lrfind.models.components import SDComponents
from lrfind.models.tokenizer import get_clip_tokenizer

# Configs as plain dicts: they are also written to disk by `lrfind model save tiny`.
TINY_UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
# Four blocks -> 8x downsampling as in SD; 32 channels so the groups of GroupNorm(32) match the
# original SD file layout that diffusers' single-file converter assumes.
TINY_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [32, 32, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}
TINY_TEXT_ENCODER_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 5,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}
# SD 1.5's training noise schedule (scaled_linear betas 0.00085..0.012, 1000 steps).
SD15_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
TINY_NATIVE_RESOLUTION = 64  # pixels; 8x8 latents


def build_tiny(seed: int = 0) -> SDComponents:
    """Build the tiny model; the same seed always gives bit-identical weights."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    # A private generator state so building the model does not disturb the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
        vae = AutoencoderKL(**TINY_VAE_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT_ENCODER_CONFIG))
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return SDComponents(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=get_clip_tokenizer(),
        noise_scheduler=DDPMScheduler(**SD15_SCHEDULER_CONFIG),
        name="tiny",
        prediction_type="epsilon",
    )
