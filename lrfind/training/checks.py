"""Checks of a training run that need no model: they fail before anything heavy loads or any file
is written (the loop's setup checks again what only the split dataset or the model can tell)."""

from __future__ import annotations

import warnings
from pathlib import Path

from lrfind.cache import check_cache_dir
from lrfind.data.limits import check_repeats, check_steps, long_run_warning
from lrfind.data.steps import dataset_steps_per_epoch
from lrfind.errors import ConfigError, LrfindWarning
from lrfind.outputs import Need, cache_bytes, check_free_space, check_writable_dir
from lrfind.training.config import TrainConfig
from lrfind.training.optimizers import canonical_optimizer_name, is_adaptive
from lrfind.training.schedulers import check_scheduler_args
from lrfind.training.setup import plan_steps


def preflight(config: TrainConfig) -> None:
    """Checks that need no model: fail before loading anything or writing any file."""
    canonical_optimizer_name(config.optimizer.type)
    check_scheduler_args(config.scheduler.name, num_training_steps=max(config.scheduler.warmup_steps, 1),
                         num_warmup_steps=config.scheduler.warmup_steps, num_cycles=config.scheduler.num_cycles,
                         power=config.scheduler.power)
    if is_adaptive(config.optimizer.type) and config.network.trains_text_encoder and (
        config.optimizer.effective_unet_lr != config.optimizer.effective_text_encoder_lr
    ):
        raise ConfigError(
            f"{config.optimizer.type} shares one step size d across UNet and text encoder and needs one lr "
            f"for both (got unet {config.optimizer.effective_unet_lr}, text encoder {config.optimizer.effective_text_encoder_lr}); "
            "give the same value (e.g. --learning-rate 1.0 without --unet-lr/--text-encoder-lr) "
            "or use --network-train-unet-only"
        )
    loraplus = sorted(k for k in config.network.args if k.startswith("loraplus_"))
    if loraplus and is_adaptive(config.optimizer.type):
        raise ConfigError(
            f"--network-args {loraplus[0]}: {config.optimizer.type} estimates one step size for all parameters, "
            "so LoRA+'s larger lr for lora_up cannot apply (kohya does not support it either); use AdamW, "
            "AdamW8bit or Lion with LoRA+, or drop the loraplus_* args"
        )
    if config.network.weights is not None and not Path(config.network.weights).is_file():
        raise ConfigError(f"{config.network.weights}: --network-weights file not found; check the path")
    if config.network.alpha > config.network.dim:
        warnings.warn(f"network_alpha {config.network.alpha:g} is above network_dim {config.network.dim}: the LoRA "
                      f"is scaled by alpha/dim = {config.network.alpha / config.network.dim:.3g} (kohya users keep "
                      "alpha <= dim); allowed, but lower --network-alpha (or the lr) unless you meant it",
                      LrfindWarning, stacklevel=2)
    if config.model.zero_terminal_snr and not config.model.v_parameterization:
        warnings.warn("--zero-terminal-snr without --v-parameterization: the last timestep is pure noise, from "
                      "which an epsilon-prediction model cannot learn anything (kohya warns the same); add "
                      "--v-parameterization for a v-prediction model, or drop --zero-terminal-snr",
                      LrfindWarning, stacklevel=2)
    check_output_places(config)


def check_run_length(config: TrainConfig, dataset) -> None:
    """Repeats and steps within lrfind.data.limits (exit 2 above), a warning for a very long run.

    Before the model loads; counted from the dataset (lora_run checks again after the validation split).
    """
    check_repeats(dataset)
    plan = plan_steps(config, dataset_steps_per_epoch(dataset, config.dataset.batch_size))
    check_steps(plan.total_steps)
    long_run = long_run_warning(plan.total_steps * config.gradient_accumulation_steps, config.dataset.batch_size,
                                len(dataset.train_images))
    if long_run:
        warnings.warn(long_run, LrfindWarning, stacklevel=2)


def check_output_places(config: TrainConfig) -> None:
    """Every folder the run writes to can be created and written (before any model is loaded)."""
    check_writable_dir(config.output_dir, "--output-dir")
    if config.logging_dir is not None:
        check_writable_dir(config.logging_dir, "--logging-dir")
    check_cache_dir(config.cache_dir)


def check_cache_space(config: TrainConfig, components, dataset, store) -> None:
    """Room for the latent and text cache entries (all of them, as if none were cached yet)."""
    images = len(dataset.train_images) + len(dataset.reg_images)
    captions = 0 if config.network.trains_text_encoder else images
    # an SDXL entry holds both encoders' states side by side and the pooled embedding (one token's worth, at most)
    second = getattr(components, "text_encoder_2", None)
    width = components.text_encoder.config.hidden_size + (second.config.hidden_size if second is not None else 0)
    tokens = config.model.max_token_length + 2 + (1 if second is not None else 0)
    need = cache_bytes(images * (2 if config.dataset.flip_aug else 1), config.dataset.resolution, captions, tokens, width)
    check_free_space([Need(store.root, need, "--cache-dir")])
