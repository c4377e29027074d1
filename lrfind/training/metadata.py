"""kohya `ss_*` metadata of a LoRA file, from a run's config, dataset, model and loop state."""

from __future__ import annotations

import time

from lrfind.data.steps import regularisation_repeats
from lrfind.network.metadata import bucket_info, bucket_metadata, kohya_metadata, network_metadata
from lrfind.network.model_hash import sd_model_hashes
from lrfind.training.optimizers import canonical_optimizer_name
from lrfind.training.validation import split_validation


def optimizer_label(config) -> str:
    """kohya writes the optimizer's class path followed by its arguments."""
    args = " ".join(f"{k}={v}" for k, v in sorted(config.optimizer.args.items()))
    return f"{canonical_optimizer_name(config.optimizer.type)}({args})"


def run_metadata(config, dataset) -> dict:
    """The ss_ keys of the network, buckets, validation split and base model (kohya's values)."""
    train, validation = split_validation(dataset.train_images, config.validation_split, config.validation_seed)
    held_out = 0 if validation is train else len(validation)  # no split: validates on train
    n_train = sum(r.repeats for r in train)
    reg_used = regularisation_repeats(n_train, [r.repeats for r in dataset.reg_images])
    images = [(r, r.repeats) for r in train] + list(zip(dataset.reg_images, reg_used))
    lo, hi = config.dataset.bucket_range
    metadata = {
        **network_metadata(config.network.module, config.network.args, config.network.dropout),
        **bucket_metadata(enable_bucket=config.dataset.enable_bucket, min_bucket_reso=lo, max_bucket_reso=hi,
                          bucket_no_upscale=config.dataset.bucket_no_upscale, info=bucket_info(images)),
        "ss_max_grad_norm": config.optimizer.max_grad_norm,
        "ss_zero_terminal_snr": config.model.zero_terminal_snr,
        "ss_num_validation_images": held_out,
        "ss_validation_split": config.validation_split,
        "ss_validation_seed": config.validation_seed,
    }
    if config.model.model != "tiny":
        metadata.update(sd_model_hashes(config.model.model))
    return metadata


def training_metadata(config, dataset, components, state, started: float) -> dict[str, str]:
    epochs = -(-state.total_steps // state.steps_per_epoch)
    return kohya_metadata(
        network_dim=config.network.dim,
        network_alpha=config.network.alpha,
        learning_rate=config.optimizer.learning_rate,
        unet_lr=config.optimizer.effective_unet_lr,
        text_encoder_lr=config.optimizer.effective_text_encoder_lr if config.network.trains_text_encoder else None,
        optimizer=optimizer_label(config),
        lr_scheduler=config.scheduler.name,
        epoch=state.epoch,
        steps=state.step,
        max_train_steps=state.total_steps,
        num_epochs=epochs,
        num_batches_per_epoch=state.steps_per_epoch * config.gradient_accumulation_steps,
        batch_size_per_device=config.dataset.batch_size,
        resolution=config.dataset.resolution,
        seed=config.seed,
        sd_model_name=components.name,
        dataset=dataset,
        training_started_at=started,
        training_finished_at=time.time(),
        output_name=config.output_name,
        network_train_unet_only=config.network.train_unet_only,
        clip_skip=config.model.clip_skip,
        mixed_precision=config.mixed_precision,
        noise_offset=config.noise_offset or None,
        min_snr_gamma=config.min_snr_gamma,
        lr_warmup_steps=config.scheduler.warmup_steps,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        gradient_checkpointing=config.gradient_checkpointing,
        caption_extension=config.dataset.caption_extension,
        keep_tokens=config.dataset.keep_tokens,
        shuffle_caption=config.dataset.shuffle_caption,
        flip_aug=config.dataset.flip_aug,
        prior_loss_weight=config.prior_loss_weight,
        max_token_length=config.model.max_token_length,
        v_parameterization=config.model.v_parameterization,
        network_module=config.network.module,
        model_family=components.family,
        extra=run_metadata(config, dataset),
    )
