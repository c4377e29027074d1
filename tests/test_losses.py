"""Diffusion loss pieces against hand computations from SD's noise schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrfind.errors import ConfigError
from lrfind.training.losses import min_snr_weights, noise_for, per_sample_mse, training_target

TIMESTEPS = torch.tensor([0, 250, 500, 999])


@pytest.fixture(scope="module")
def sd_scheduler():
    from diffusers import DDPMScheduler

    # Stable Diffusion 1.x's training schedule.
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def _sd_alphas_cumprod() -> np.ndarray:
    """SD's scaled-linear schedule computed independently of diffusers, in float64."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    return np.cumprod(1.0 - betas)


def _latents(batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_epsilon_target_is_the_noise(sd_scheduler):
    latents = _latents()
    noise = torch.randn_like(latents)
    assert torch.equal(training_target(sd_scheduler, latents, noise, TIMESTEPS, "epsilon"), noise)


def test_v_target_matches_the_velocity_formula(sd_scheduler):
    latents = _latents()
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    target = training_target(sd_scheduler, latents, noise, TIMESTEPS, "v_prediction")
    alphas_cumprod = torch.tensor(_sd_alphas_cumprod()[TIMESTEPS.numpy()], dtype=torch.float32)
    sqrt_alpha = alphas_cumprod.sqrt().view(-1, 1, 1, 1)
    sqrt_one_minus_alpha = (1 - alphas_cumprod).sqrt().view(-1, 1, 1, 1)
    expected = sqrt_alpha * noise - sqrt_one_minus_alpha * latents  # v = sqrt(a) eps - sqrt(1-a) x0
    torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(target, noise)


def test_min_snr_weights_epsilon_against_hand_computation(sd_scheduler):
    alphas_cumprod = _sd_alphas_cumprod()[TIMESTEPS.numpy()]
    snr = alphas_cumprod / (1 - alphas_cumprod)
    weights = min_snr_weights(sd_scheduler, TIMESTEPS, 5.0, "epsilon")
    assert weights.shape == (4,) and weights.dtype == torch.float32
    np.testing.assert_allclose(weights.numpy(), np.minimum(snr, 5.0) / snr, rtol=1e-4)
    # t=0: snr ~ 1175, so the weight is ~5/1175; late timesteps (snr < 5) keep weight 1.
    assert weights[0].item() == pytest.approx(5.0 / 1175.47, rel=1e-3)
    assert weights[2:].tolist() == [1.0, 1.0]


def test_min_snr_weights_v_prediction_against_hand_computation(sd_scheduler):
    alphas_cumprod = _sd_alphas_cumprod()[TIMESTEPS.numpy()]
    snr = alphas_cumprod / (1 - alphas_cumprod)
    weights = min_snr_weights(sd_scheduler, TIMESTEPS, 5.0, "v_prediction")
    np.testing.assert_allclose(weights.numpy(), np.minimum(snr, 5.0) / (snr + 1), rtol=1e-4)
    assert weights[3].item() < 0.01  # snr(999) ~ 0.0047: weight ~ snr


def test_min_snr_weights_are_finite_with_zero_terminal_snr():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(beta_schedule="scaled_linear", rescale_betas_zero_snr=True)
    weights = min_snr_weights(scheduler, torch.tensor([10, 999]), 5.0, "epsilon")
    assert torch.isfinite(weights).all()
    assert weights[1].item() == 1.0


def test_bad_gamma_and_prediction_type_are_config_errors(sd_scheduler):
    with pytest.raises(ConfigError, match="min-snr-gamma is 0"):
        min_snr_weights(sd_scheduler, TIMESTEPS, 0.0, "epsilon")
    with pytest.raises(ConfigError, match="prediction type 'sample' is not supported"):
        training_target(sd_scheduler, _latents(), _latents(seed=1), TIMESTEPS, "sample")


def test_noise_offset_changes_only_the_per_channel_mean():
    latents = _latents()
    plain = noise_for(latents, torch.Generator().manual_seed(3), noise_offset=0.0)
    offset = noise_for(latents, torch.Generator().manual_seed(3), noise_offset=0.1)
    difference = offset - plain
    per_channel = difference[:, :, :1, :1]
    # One constant per image and channel, spatially uniform, so the spatial pattern is unchanged.
    torch.testing.assert_close(difference, per_channel.expand_as(difference))
    torch.testing.assert_close(offset.mean(dim=(2, 3)) - plain.mean(dim=(2, 3)), per_channel[:, :, 0, 0])
    assert per_channel.abs().min() > 0 and per_channel.abs().max() < 0.5  # 0.1 * randn
    assert per_channel.std() > 0.01  # differs between images and channels


def test_noise_is_reproducible_from_the_generator_and_shaped_like_latents():
    latents = _latents().to(torch.bfloat16)
    first = noise_for(latents, torch.Generator().manual_seed(7), 0.05)
    second = noise_for(latents, torch.Generator().manual_seed(7), 0.05)
    other = noise_for(latents, torch.Generator().manual_seed(8), 0.05)
    assert first.shape == latents.shape and first.dtype == torch.bfloat16
    assert torch.equal(first, second) and not torch.equal(first, other)
    assert noise_for(latents, None, 0.0).shape == latents.shape


def test_per_sample_mse_against_hand_computation():
    prediction = torch.zeros(2, 4, 2, 2)
    target = torch.zeros(2, 4, 2, 2)
    target[0] = 1.0  # sample 0: every element off by 1
    target[1, 0, 0, 0] = 4.0  # sample 1: one element of 16 off by 4 -> 16 / 16
    target[1, 3, 1, 1] = 2.0  # and one off by 2 -> 4 / 16
    loss = per_sample_mse(prediction, target)
    assert loss.shape == (2,)
    torch.testing.assert_close(loss, torch.tensor([1.0, 1.25]))


def test_per_sample_mse_is_float32_for_half_inputs():
    prediction = torch.full((3, 4, 2, 2), 0.5, dtype=torch.bfloat16)
    loss = per_sample_mse(prediction, torch.zeros_like(prediction))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, torch.full((3,), 0.25))
