"""Prepare everything the loop needs from a TrainConfig, a loaded model and a scanned dataset.

`lora_run` is a context manager: it attaches a fresh LoRA to the (shared, already loaded) model,
builds optimizer, scheduler, caches and validation set, yields the LoopParts, and detaches the
LoRA afterwards so the same loaded model serves the next trial with flat memory.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from lrfind.cache import LatentCache, TextEmbeddingCache
from lrfind.data.limits import check_repeats, check_steps
from lrfind.data.types import Dataset, ImageRecord
from lrfind.models.loading import zero_terminal_snr_scheduler
from lrfind.models.size_conditioning import kohya_time_ids
from lrfind.models.text_encoding_sdxl import validate_sdxl_text_options
from lrfind.network import NetworkSpec, attach_network, load_lora
from lrfind.network.attach import check_weights_family, check_weights_module
from lrfind.training.batches import batches_per_epoch, epoch_items
from lrfind.training.conditioning import TextConditioner
from lrfind.training.config import TrainConfig
from lrfind.training.distributed import process_group
from lrfind.training.loop import LoopParts
from lrfind.training.optimizers import build_optimizer
from lrfind.training.plan import ValidationPlan
from lrfind.training.schedulers import build_scheduler
from lrfind.training.validation import ValidationSet, shared_validation_set, split_validation, validation_key


@dataclass(frozen=True)
class StepPlan:
    steps_per_epoch: int
    total_steps: int
    epochs: int  # epochs needed to reach total_steps (the last may be partial)


def plan_steps(config: TrainConfig, n_batches_per_epoch: int) -> StepPlan:
    """kohya: --max_train_epochs, when given, overrides --max_train_steps."""
    per_epoch = math.ceil(n_batches_per_epoch / config.gradient_accumulation_steps)
    total = config.max_train_epochs * per_epoch if config.max_train_epochs else config.max_train_steps
    return StepPlan(per_epoch, total, math.ceil(total / per_epoch))


def pick_device(mixed_precision: str):
    """(device, weight dtype, accelerate mixed-precision mode). Mixed precision needs a GPU."""
    import torch

    if torch.cuda.is_available():
        dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]
        return torch.device("cuda"), dtype, mixed_precision
    if mixed_precision != "no":
        warnings.warn(f"mixed precision {mixed_precision} needs a GPU; training in fp32 on the CPU")
    return torch.device("cpu"), torch.float32, "no"


def make_accelerator(mixed_precision: str, cpu: bool):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps one global state per process; a study runs many trials in one process.
    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def cached_features(config: TrainConfig, components, records, store, *, flips, trains_te: bool):
    """Latents for every (image, flip) and, when cacheable, text embeddings per caption."""
    latent_cache = LatentCache(components, store)
    latents = {}
    for flip in flips:
        for record, latent in zip(records, latent_cache.get(records, flip=flip)):
            latents[(record.path, flip)] = latent
    memo = {}
    if not trains_te:
        captions = sorted({r.caption for r in records})
        text_cache = TextEmbeddingCache(components, store, clip_skip=config.model.clip_skip,
                                        max_token_length=config.model.max_token_length)
        memo = dict(zip(captions, text_cache.get_embeddings(captions)))
    return latents, memo


def param_groups(config: TrainConfig, network) -> list[dict]:
    te_lr = config.optimizer.effective_text_encoder_lr if config.network.trains_text_encoder else None
    return network.param_groups(config.optimizer.effective_unet_lr, te_lr)


def network_spec(config: TrainConfig):
    return NetworkSpec(network_dim=config.network.dim, network_alpha=config.network.alpha,
                       train_text_encoder=config.network.trains_text_encoder,
                       network_module=config.network.module, network_args=dict(config.network.args),
                       network_dropout=config.network.dropout)


def _train_and_validation_records(config: TrainConfig, dataset: Dataset,
                                  held_out: Optional[Sequence[ImageRecord]]) -> tuple[list, list]:
    if held_out:
        return list(dataset.train_images), list(held_out)
    return split_validation(dataset.train_images, config.validation_split, config.validation_seed)


def _optimizer_and_schedule(config: TrainConfig, network, accelerator, total_steps: int):
    optimizer = build_optimizer(config.optimizer.type, param_groups(config, network), extra=dict(config.optimizer.args))
    scheduler = build_scheduler(config.scheduler.name, optimizer, num_training_steps=total_steps,
                                num_warmup_steps=config.scheduler.warmup_steps,
                                num_cycles=config.scheduler.num_cycles, power=config.scheduler.power)
    return accelerator.prepare_optimizer(optimizer, device_placement=False), scheduler


def _validation_set(config: TrainConfig, val_records, latents, noise_scheduler, prediction_type: str,
                    needs_time_ids: bool, validation_memo: Optional[dict]) -> ValidationSet:
    """The run's ValidationSet, shared through `validation_memo` with runs that have the same key."""
    val_latents, val_captions = [latents[(r.path, False)] for r in val_records], [r.caption for r in val_records]
    settings = dict(timesteps=config.validation_timesteps, seed=config.validation_seed, prediction_type=prediction_type)
    val_time_ids = [kohya_time_ids(r.size, r.bucket) for r in val_records] if needs_time_ids else None
    key = validation_key([r.path for r in val_records], val_captions, val_latents, **settings,
                         zero_terminal_snr=config.model.zero_terminal_snr)
    return shared_validation_set(validation_memo, key, lambda: ValidationSet(
        val_latents, val_captions, noise_scheduler=noise_scheduler, time_ids=val_time_ids, **settings))


def place_model(components, device, dtype) -> None:
    """The trained networks on the run's device and dtype (once: the shared model stays put between trials)."""
    for module in (components.unet, components.text_encoder, components.text_encoder_2):
        if module is not None and (module.device != device or module.dtype != dtype):
            module.to(device, dtype)


def _attach_network(config: TrainConfig, components, spec, attached=None):
    """A fresh network on the model (or `attached`, one made for this run already: a cohort's member);
    with --network-weights, those weights (checked against model and type)."""
    network = attach_network(components, spec, seed=config.seed) if attached is None else attached
    if config.network.weights is not None:
        source = f"--network-weights {config.network.weights}"
        try:
            state_dict, metadata = load_lora(config.network.weights)
            check_weights_family(state_dict, metadata, components, source)
            check_weights_module(metadata, spec, source)
            network.load_kohya_state_dict(state_dict, source=source)
        except BaseException:
            network.detach()
            raise
    return network


def _noise_schedule(config: TrainConfig, components) -> tuple[str, object]:
    """(prediction type, noise scheduler): the model's shared schedule, or a zero-terminal-SNR copy (kohya's option)."""
    prediction_type = "v_prediction" if config.model.v_parameterization else components.prediction_type
    return prediction_type, (zero_terminal_snr_scheduler(components.noise_scheduler) if config.model.zero_terminal_snr
                             else components.noise_scheduler)


@contextmanager
def lora_run(config: TrainConfig, components, dataset: Dataset, store,
             validation_memo: Optional[dict] = None,
             held_out: Optional[Sequence[ImageRecord]] = None,
             validation_plan: Optional[ValidationPlan] = None, network=None) -> Iterator[LoopParts]:
    """`validation_memo`: a dict a study keeps, so its trials share one ValidationSet.
    `held_out`: images to validate on instead of config.validation_split's; `dataset` then holds
    only the images to train on (a study's split, lrfind.study.held_out). `validation_plan`: when
    to validate (a study's trial plan); default: config.validate_every_n_steps, else each epoch.
    `network`: the run's network already attached (a member of lrfind.training.cohort's cohort,
    which detaches it); default: a fresh one of config's, detached at the end."""
    import torch

    check_repeats(dataset)  # before the epoch's image-repeats are listed (memory grows with them)
    group = process_group()  # data-parallel: each step is one global batch of batch size x processes
    global_batch = config.dataset.batch_size * group.world_size
    device, dtype, mixed = pick_device(config.mixed_precision)
    train_records, val_records = _train_and_validation_records(config, dataset, held_out)
    records = list(dict.fromkeys(train_records + val_records + list(dataset.reg_images)))
    flips = (False, True) if config.dataset.flip_aug else (False,)
    latents, memo = cached_features(config, components, records, store, flips=flips,
                                    trains_te=config.network.trains_text_encoder)
    items = epoch_items(train_records, dataset.reg_images, config.prior_loss_weight)
    plan = plan_steps(config, batches_per_epoch(items, global_batch))
    check_steps(plan.total_steps)
    spec = network_spec(config)
    if components.text_encoder_2 is not None:
        validate_sdxl_text_options(config.model.clip_skip, config.model.max_token_length)
    place_model(components, device, dtype)
    network = _attach_network(config, components, spec, attached=network)
    try:
        if config.gradient_checkpointing:
            components.unet.enable_gradient_checkpointing()
        accelerator = make_accelerator(mixed, cpu=device.type == "cpu")
        optimizer, scheduler = _optimizer_and_schedule(config, network, accelerator, plan.total_steps)
        prediction_type, noise_scheduler = _noise_schedule(config, components)
        conditioner = TextConditioner(components, memo, clip_skip=config.model.clip_skip,
                                      max_token_length=config.model.max_token_length,
                                      trains_text_encoder=config.network.trains_text_encoder)
        validation = _validation_set(config, val_records, latents, noise_scheduler, prediction_type,
                                     conditioner.needs_time_ids, validation_memo)
        # A compiled wrapper shares the UNet's weights; dynamo compiles at the first step (and again
        # for validation's eval/inference mode and each new latent shape).
        unet = torch.compile(components.unet) if config.torch_compile else components.unet
        yield LoopParts(
            unet=unet, network=network, optimizer=optimizer, lr_scheduler=scheduler,
            accelerator=accelerator, conditioner=conditioner, latents=latents,
            noise_scheduler=noise_scheduler, items=items, total_steps=plan.total_steps,
            steps_per_epoch=plan.steps_per_epoch, batch_size=global_batch,
            gradient_accumulation_steps=config.gradient_accumulation_steps, max_grad_norm=config.optimizer.max_grad_norm,
            seed=config.seed, prediction_type=prediction_type, noise_offset=config.noise_offset,
            min_snr_gamma=config.min_snr_gamma, shuffle_caption=config.dataset.shuffle_caption,
            keep_tokens=config.dataset.keep_tokens, flip_aug=config.dataset.flip_aug,
            validation=validation if group.is_main else None,  # the main process validates
            validation_plan=validation_plan or ValidationPlan(config.validate_every_n_steps),
            device=device, dtype=None if dtype == torch.float32 else dtype, group=group,
        )
    finally:
        if config.gradient_checkpointing:
            components.unet.disable_gradient_checkpointing()
        network.detach()
