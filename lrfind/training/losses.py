"""The pieces of the diffusion training loss, as kohya sd-scripts computes them.

The loop draws noise (`noise_for`), noises the latents with the scheduler's `add_noise`, predicts,
and takes `per_sample_mse(prediction, training_target(...))`, optionally weighted per sample by
`min_snr_weights` before the batch mean.
"""

from __future__ import annotations

import torch

from lrfind.errors import ConfigError

PREDICTION_TYPES = ("epsilon", "v_prediction")


def _check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(
            f"prediction type {prediction_type!r} is not supported; the model's scheduler config "
            f"must use one of {', '.join(PREDICTION_TYPES)}"
        )


def noise_for(
    latents: torch.Tensor, generator: torch.Generator | None, noise_offset: float = 0.0
) -> torch.Tensor:
    """Gaussian noise shaped like `latents`, plus kohya's noise offset.

    The offset adds `noise_offset * randn(B, C, 1, 1)`: one constant per image and channel, which
    lets the model learn to change an image's overall brightness (kohya's `apply_noise_offset`).
    """
    noise = torch.randn(
        latents.shape, generator=generator, dtype=latents.dtype, device=latents.device
    )
    if noise_offset:
        batch, channels = latents.shape[:2]
        offset_shape = (batch, channels) + (1,) * (latents.ndim - 2)
        noise = noise + noise_offset * torch.randn(
            offset_shape, generator=generator, dtype=latents.dtype, device=latents.device
        )
    return noise


def training_target(
    scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """What the UNet should predict: the noise (epsilon) or the velocity (v-prediction)."""
    _check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return noise
    return scheduler.get_velocity(latents, noise, timesteps)


def min_snr_weights(
    scheduler, timesteps: torch.Tensor, gamma: float, prediction_type: str
) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-gamma (kohya's `apply_snr_weight`), shape [B], float32.

    epsilon: min(snr, gamma) / snr; v-prediction: min(snr, gamma) / (snr + 1).
    """
    from diffusers.training_utils import compute_snr

    _check_prediction_type(prediction_type)
    if not gamma > 0:
        raise ConfigError(f"--min-snr-gamma is {gamma}; it must be > 0 (5 is the usual value)")
    snr = compute_snr(scheduler, timesteps)
    if prediction_type == "v_prediction":
        return torch.minimum(snr, torch.full_like(snr, gamma)) / (snr + 1)
    # min(snr, gamma) / snr written as min(gamma / snr, 1): equal for snr > 0, and 1 rather than
    # NaN at snr = 0 (the last timestep of a zero-terminal-SNR schedule).
    return torch.clamp(gamma / snr, max=1.0)


def per_sample_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each sample over all but the batch dimension, in float32: [B]."""
    squared_error = torch.nn.functional.mse_loss(prediction.float(), target.float(), reduction="none")
    return squared_error.mean(dim=tuple(range(1, squared_error.ndim)))
