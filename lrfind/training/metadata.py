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
    args = " ".join(f"{k}={v}" for k, v in sorted(config.optimizer_args.items()))
    return f"{canonical_optimizer_name(config.optimizer_type)}({args})"


def run_metadata(config, dataset) -> dict:
    """The ss_ keys of the network, buckets, validation split and base model (kohya's values)."""
    train, validation = split_validation(dataset.train_images, config.validation_split, config.validation_seed)
    held_out = 0 if validation is train else len(validation)  # no split: validates on train
    n_train = sum(r.repeats for r in train)
    reg_used = regularisation_repeats(n_train, [r.repeats for r in dataset.reg_images])
    images = [(r, r.repeats) for r in train] + list(zip(dataset.reg_images, reg_used))
    lo, hi = config.dataset_config().bucket_range
    metadata = {
        **network_metadata(config.network_module, config.network_args, config.network_dropout),
        **bucket_metadata(enable_bucket=config.enable_bucket, min_bucket_reso=lo, max_bucket_reso=hi,
                          bucket_no_upscale=config.bucket_no_upscale, info=bucket_info(images)),
        "ss_max_grad_norm": config.max_grad_norm,
        "ss_zero_terminal_snr": config.zero_terminal_snr,
        "ss_num_validation_images": held_out,
        "ss_validation_split": config.validation_split,
        "ss_validation_seed": config.validation_seed,
    }
    if config.pretrained_model_name_or_path != "tiny":
        metadata.update(sd_model_hashes(config.pretrained_model_name_or_path))
    return metadata


def training_metadata(config, dataset, components, state, started: float) -> dict[str, str]:
    epochs = -(-state.total_steps // state.steps_per_epoch)
    return kohya_metadata(
        network_dim=config.network_dim,
        network_alpha=config.network_alpha,
        learning_rate=config.learning_rate,
        unet_lr=config.effective_unet_lr,
        text_encoder_lr=config.effective_text_encoder_lr if config.trains_text_encoder else None,
        optimizer=optimizer_label(config),
        lr_scheduler=config.lr_scheduler,
        epoch=state.epoch,
        steps=state.step,
        max_train_steps=state.total_steps,
        num_epochs=epochs,
        num_batches_per_epoch=state.steps_per_epoch * config.gradient_accumulation_steps,
        batch_size_per_device=config.train_batch_size,
        resolution=config.resolution,
        seed=config.seed,
        sd_model_name=components.name,
        dataset=dataset,
        training_started_at=started,
        training_finished_at=time.time(),
        output_name=config.output_name,
        network_train_unet_only=config.network_train_unet_only,
        clip_skip=config.clip_skip,
        mixed_precision=config.mixed_precision,
        noise_offset=config.noise_offset or None,
        min_snr_gamma=config.min_snr_gamma,
        lr_warmup_steps=config.lr_warmup_steps,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        gradient_checkpointing=config.gradient_checkpointing,
        caption_extension=config.caption_extension,
        keep_tokens=config.keep_tokens,
        shuffle_caption=config.shuffle_caption,
        flip_aug=config.flip_aug,
        prior_loss_weight=config.prior_loss_weight,
        max_token_length=config.max_token_length,
        v_parameterization=config.v_parameterization,
        network_module=config.network_module,
        model_family=components.family,
        extra=run_metadata(config, dataset),
    )
