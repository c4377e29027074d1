"""kohya's --zero_terminal_snr: the run's training schedule rescaled as kohya rescales it (the
shared model's left alone), a warning without --v-parameterization, the metadata and the export."""

from __future__ import annotations

import warnings

import pytest
import torch

from lrfind.errors import LrfindWarning
from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import train_config


def kohya_fixed_alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """kohya-ss/sd-scripts 48d368fa library/custom_train_functions.py
    fix_noise_scheduler_betas_for_zero_terminal_snr, its arithmetic as written there."""
    alphas_bar_sqrt = (1 - betas).cumprod(0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= last
    alphas_bar_sqrt *= first / (first - last)
    alphas_bar = alphas_bar_sqrt ** 2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return torch.cumprod(1.0 - (1 - alphas), dim=0)


def test_the_schedule_is_kohyas_and_ends_in_pure_noise(tiny):
    from lrfind.models.loading import zero_terminal_snr_scheduler

    fixed = zero_terminal_snr_scheduler(tiny.noise_scheduler)
    expected = kohya_fixed_alphas_cumprod(tiny.noise_scheduler.betas.clone())
    assert torch.allclose(fixed.alphas_cumprod, expected, rtol=1e-5, atol=1e-9)
    assert fixed.alphas_cumprod[-1] == 0 and tiny.noise_scheduler.alphas_cumprod[-1] > 0
    assert fixed.alphas_cumprod[0] == pytest.approx(float(tiny.noise_scheduler.alphas_cumprod[0]))


def _config(example_dataset, tmp_path, **overrides) -> TrainConfig:
    values = dict(train_data_dir=example_dataset, resolution=64, max_train_steps=3, network_dim=4,
                  network_train_unet_only=True, output_dir=tmp_path / "out", progress=False,
                  v_parameterization=True, zero_terminal_snr=True)
    return train_config({**values, **overrides})


def test_a_run_trains_on_its_own_rescaled_schedule_and_leaves_the_model_s(tiny, example_dataset, feature_store,
                                                                          tmp_path):
    from lrfind.data.kohya import scan_dataset
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    config = _config(example_dataset, tmp_path)
    dataset = scan_dataset(config.dataset, log_warnings=False)
    shared = tiny.noise_scheduler.alphas_cumprod.clone()
    with lora_run(config, tiny, dataset, feature_store) as parts:
        assert parts.noise_scheduler is not tiny.noise_scheduler and parts.noise_scheduler.alphas_cumprod[-1] == 0
        state = run_loop(parts)
    assert state.val_loss is not None and torch.isfinite(torch.tensor(state.val_loss))
    assert torch.equal(tiny.noise_scheduler.alphas_cumprod, shared)  # the study's shared model: untouched
    with lora_run(_config(example_dataset, tmp_path, zero_terminal_snr=False), tiny, dataset, feature_store) as parts:
        assert parts.noise_scheduler is tiny.noise_scheduler
        plain = run_loop(parts)
    assert plain.val_loss != state.val_loss  # validated on the run's own schedule, not a shared set of the other


def test_without_v_parameterization_it_warns_as_kohya_does(example_dataset, tmp_path):
    from lrfind.training.checks import preflight

    with pytest.warns(LrfindWarning, match="--v-parameterization"):
        preflight(_config(example_dataset, tmp_path, v_parameterization=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LrfindWarning)
        preflight(_config(example_dataset, tmp_path))


def test_metadata_and_export_carry_it(tmp_path):
    from lrfind.export.kohya_config import kohya_training_values
    from lrfind.training.metadata import run_metadata
    from test_export_kohya import make_recommendation

    rec = make_recommendation(tmp_path)
    on = rec.model_copy(update={"train_values": {**rec.train_values, "zero_terminal_snr": True,
                                                 "v_parameterization": True}})
    values = dict(model_path="m", dataset_dir=None, output_dir="o", output_name="n", logging_dir=None)
    assert kohya_training_values(on, **values)["zero_terminal_snr"] is True
    assert "zero_terminal_snr" not in kohya_training_values(rec, **values)  # off: kohya's default, not written
    from types import SimpleNamespace

    config = train_config(dict(train_data_dir=tmp_path, max_train_steps=1, zero_terminal_snr=True, v_parameterization=True))
    assert run_metadata(config, SimpleNamespace(train_images=[], reg_images=[]))["ss_zero_terminal_snr"] is True
