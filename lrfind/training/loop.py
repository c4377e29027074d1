"""The one training loop: probe, study trials and final runs all run through `run_loop`.

Everything a run needs is prepared beforehand into `LoopParts` (see setup.py); the loop only
steps. What differs between probe, trial and final run lives in callbacks (d*lr recording,
pruning, logging, checkpoints). The loop knows nothing of Optuna: a callback that wants the run
to stop raises TrainingStopped (a NaN loss raises TrainingDiverged, which says at which step and lr). Randomness is drawn from generators seeded per (seed, epoch), so
a run resumed at an epoch boundary continues exactly as an uninterrupted one.

The bookkeeping (epochs, accumulation, optimizer steps, validation, callbacks) is `run_steps`, a
generator that asks for each micro-batch's loss and its backward: `run_loop` answers for one run,
lrfind.training.cohort for several runs trained at once through one model.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from lrfind.errors import TrainingDiverged
from lrfind.models.size_conditioning import kohya_time_ids
from lrfind.training.batches import TrainItem, epoch_batches, process_caption
from lrfind.training.distributed import average_gradients, mean_across
from lrfind.training.losses import min_snr_weights, noise_for, per_sample_mse, training_target
from lrfind.training.optimizers import d_times_lr
from lrfind.training.plan import ValidationPlan


@dataclass
class LoopParts:
    unet: Any
    network: Any  # lrfind.network.LoraNetwork
    optimizer: Any
    lr_scheduler: Any
    accelerator: Any
    conditioner: Any  # TextConditioner
    latents: dict  # (image path, flip) -> latent tensor [4, h, w], scaled
    noise_scheduler: Any
    items: Sequence[TrainItem]
    total_steps: int
    steps_per_epoch: int
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 0.0  # clip the trainable parameters' gradient norm (kohya); 0: no clipping
    seed: int = 42
    prediction_type: str = "epsilon"
    noise_offset: float = 0.0
    min_snr_gamma: Optional[float] = None
    shuffle_caption: bool = False
    keep_tokens: int = 0
    flip_aug: bool = False
    validation: Any = None  # ValidationSet or None
    validation_plan: ValidationPlan = ValidationPlan()  # when to validate (lrfind.training.plan)
    device: Any = "cpu"
    dtype: Any = None  # weight dtype of the frozen UNet (None: float32)
    group: Any = None  # lrfind.training.distributed.ProcessGroup of a data-parallel run; None: one process


@dataclass
class LoopState:
    total_steps: int
    steps_per_epoch: int
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    last_loss: float = math.nan
    epoch_losses: list[float] = field(default_factory=list)
    lrs: dict[str, float] = field(default_factory=dict)
    d_lrs: dict[str, float] = field(default_factory=dict)
    val_loss: Optional[float] = None
    val_history: list[tuple[int, float]] = field(default_factory=list)

    @property
    def average_loss(self) -> float:
        return sum(self.epoch_losses) / len(self.epoch_losses) if self.epoch_losses else math.nan


@dataclass(frozen=True)
class Draw:
    """run_steps asks for the loss of this micro-batch (the noise and timesteps drawn from gen / rng)."""

    batch: list  # [TrainItem]
    gen: Any  # the epoch's torch.Generator
    rng: random.Random  # the epoch's Python RNG (flips, caption shuffling)


@dataclass(frozen=True)
class Backward:
    """run_steps asks to backpropagate its micro-batch's share of the step's loss (None: nothing to)."""

    loss: Any


@dataclass(frozen=True)
class MicroInputs:
    """A micro-batch, drawn and noised: what the U-Net is called on, and what its loss compares with."""

    batch: list  # [TrainItem]
    noisy: Any
    timesteps: Any
    target: Any
    conditioning: Any  # lrfind.models.conditioning.UNetConditioning


def run_loop(parts: LoopParts, callbacks: Sequence[Any] = (), state: Optional[LoopState] = None) -> LoopState:
    state = state or LoopState(parts.total_steps, parts.steps_per_epoch)
    _emit(callbacks, "on_train_start", state)
    parts.unet.train()
    steps = run_steps(parts, callbacks, state)
    try:
        request = next(steps)
        while True:
            if isinstance(request, Draw):
                reply = _micro_step(parts, request.batch, request.gen, request.rng)
            else:
                reply = None if request.loss is None else parts.accelerator.backward(request.loss)
            request = steps.send(reply)
    except StopIteration:
        pass  # the run's steps are done
    finally:
        parts.unet.eval()
        parts.optimizer.zero_grad(set_to_none=True)
    _emit(callbacks, "on_train_end", state)
    return state


def run_steps(parts: LoopParts, callbacks: Sequence[Any], state: LoopState):
    """One run's steps as a generator: epochs, accumulation, optimizer steps, validation, callbacks.

    It yields a Draw for each micro-batch and is sent that micro-batch's loss tensor; it then
    yields a Backward and is sent None once the caller has backpropagated it. Whoever runs the
    forward and backward (run_loop for one run, lrfind.training.cohort for several at once) calls
    on_train_start / on_train_end and puts the U-Net in train mode and back.
    """
    while state.step < state.total_steps:
        state.epoch_losses = []
        batches = epoch_batches(parts.items, parts.batch_size, parts.seed, state.epoch)
        torch_gen, rng = _epoch_generators(parts.seed, state.epoch)
        _seed_global_rng(parts.seed, state.epoch)
        accum = parts.gradient_accumulation_steps
        for index, batch in enumerate(batches):
            loss = yield Draw(batch, torch_gen, rng)
            value = loss.item()
            if parts.group is not None and parts.group.parallel:
                value = mean_across(value)  # the global batch's loss, on every process
            if not math.isfinite(value):
                raise _diverged(parts, state, value)
            # a process whose shard of a small last batch is empty has no graph
            yield Backward(loss / accum if loss.requires_grad else None)
            state.epoch_losses.append(value)
            if (index + 1) % accum and index + 1 < len(batches):
                continue
            _optimizer_step(parts, state)
            _emit(callbacks, "on_step_end", state)
            if parts.validation_plan.validates_at(state.step):
                _validate(parts, state, callbacks)
            if state.step >= state.total_steps:
                break
        state.epoch += 1
        if parts.validation is not None and parts.validation_plan.per_epoch:
            _validate(parts, state, callbacks)
        _emit(callbacks, "on_epoch_end", state)
    if parts.validation is not None and (not state.val_history or state.val_history[-1][0] != state.step):
        _validate(parts, state, callbacks)  # the run's final weights always get a validation loss


def _micro_step(parts: LoopParts, batch: list[TrainItem], gen, rng: random.Random):
    """The micro-batch's loss (a tensor with its graph)."""
    if parts.group is not None and parts.group.parallel:  # the whole global batch drawn, this shard kept
        return _shard_loss(parts, batch, *_draw(parts, batch, gen, rng))
    micro = micro_inputs(parts, batch, gen, rng)
    return micro_loss(parts, micro, predict(parts, micro.noisy, micro.timesteps, micro.conditioning))


def _draw(parts: LoopParts, batch: list[TrainItem], gen, rng: random.Random):
    """(latents, noise, timesteps, captions, time_ids) of a micro-batch, drawn from the epoch's generators."""
    import torch

    flips = [parts.flip_aug and rng.random() < 0.5 for _ in batch]
    latents = torch.stack([parts.latents[(it.record.path, flip)] for it, flip in zip(batch, flips)])
    captions = [process_caption(it.record.caption, parts.shuffle_caption, parts.keep_tokens, rng) for it in batch]
    noise = noise_for(latents, gen, parts.noise_offset)
    timesteps = torch.randint(0, parts.noise_scheduler.config.num_train_timesteps, (len(batch),), generator=gen)
    return latents, noise, timesteps, captions, _time_ids(parts, batch, flips)


def micro_inputs(parts: LoopParts, batch: list[TrainItem], gen, rng: random.Random) -> MicroInputs:
    """A micro-batch drawn, noised and conditioned (a text-encoder LoRA's graph included)."""
    latents, noise, timesteps, captions, time_ids = _draw(parts, batch, gen, rng)
    noisy = parts.noise_scheduler.add_noise(latents, noise, timesteps)
    target = training_target(parts.noise_scheduler, latents, noise, timesteps, parts.prediction_type)
    conditioning = parts.conditioner.encode(captions, as_written=not parts.shuffle_caption, device=parts.device,
                                            time_ids=time_ids)
    return MicroInputs(batch, noisy, timesteps, target, conditioning)


def predict(parts: LoopParts, noisy, timesteps, conditioning):
    """The U-Net's prediction for a batch (in the run's dtype, under its autocast)."""
    import torch

    dtype = parts.dtype or torch.float32
    with parts.accelerator.autocast():
        return parts.unet(noisy.to(parts.device, dtype), timesteps.to(parts.device),
                          **conditioning.unet_kwargs(dtype)).sample


def micro_loss(parts: LoopParts, micro: MicroInputs, pred):
    """The micro-batch's weighted mean loss, from the U-Net's prediction of its rows."""
    import torch

    per_sample = per_sample_mse(pred, micro.target.to(parts.device))
    weights = torch.tensor([it.loss_weight for it in micro.batch], device=parts.device)
    if parts.min_snr_gamma:
        weights = weights * min_snr_weights(parts.noise_scheduler, micro.timesteps, parts.min_snr_gamma,
                                            parts.prediction_type).to(parts.device)
    return (per_sample * weights).mean()


def _time_ids(parts: LoopParts, batch: list[TrainItem], flips: list[bool]):
    """SDXL's size/crop conditioning per image (kohya's); None for families without it."""
    if not parts.conditioner.needs_time_ids:
        return None
    return [kohya_time_ids(it.record.size, it.record.bucket, flip) for it, flip in zip(batch, flips)]


def _shard_loss(parts: LoopParts, batch, latents, noise, timesteps, captions, time_ids):
    """This process's part of the global batch's mean loss (lrfind.training.distributed)."""
    import torch

    keep = parts.group.shard(len(batch))
    if keep.start == keep.stop:
        return torch.zeros((), device=parts.device)
    latents, noise, timesteps = latents[keep], noise[keep], timesteps[keep]
    noisy = parts.noise_scheduler.add_noise(latents, noise, timesteps)
    target = training_target(parts.noise_scheduler, latents, noise, timesteps, parts.prediction_type)
    dtype = parts.dtype or torch.float32
    conditioning = parts.conditioner.encode(captions[keep], as_written=not parts.shuffle_caption, device=parts.device,
                                            time_ids=time_ids[keep] if time_ids is not None else None)
    with parts.accelerator.autocast():
        pred = parts.unet(noisy.to(parts.device, dtype), timesteps.to(parts.device),
                          **conditioning.unet_kwargs(dtype)).sample
    per_sample = per_sample_mse(pred, target.to(parts.device))
    weights = torch.tensor([it.loss_weight for it in batch[keep]], device=parts.device)
    if parts.min_snr_gamma:
        weights = weights * min_snr_weights(parts.noise_scheduler, timesteps, parts.min_snr_gamma, parts.prediction_type).to(parts.device)
    return (per_sample * weights).sum() * parts.group.world_size / len(batch)


def _diverged(parts: LoopParts, state: LoopState, loss: float) -> TrainingDiverged:
    """The error for a non-finite loss at the step being taken, with the lrs that step uses."""
    groups = parts.optimizer.param_groups
    lrs = {g.get("name", f"group{i}"): float(g["lr"]) for i, g in enumerate(groups)}
    return TrainingDiverged(loss, state.step + 1, lrs, d_times_lr(parts.optimizer))


def _optimizer_step(parts: LoopParts, state: LoopState) -> None:
    trained = [p for g in parts.optimizer.param_groups for p in g["params"]]
    if parts.group is not None and parts.group.parallel:
        average_gradients(trained)
    if parts.max_grad_norm:  # after averaging, as accelerate's clip_grad_norm_ in kohya's loop
        parts.accelerator.clip_grad_norm_(trained, parts.max_grad_norm)
    parts.optimizer.step()
    parts.optimizer.zero_grad(set_to_none=True)
    # d*lr is read after the step but before the scheduler moves lr: the lr this step used.
    state.lrs = {g.get("name", f"group{i}"): float(g["lr"]) for i, g in enumerate(parts.optimizer.param_groups)}
    state.d_lrs = d_times_lr(parts.optimizer)
    parts.lr_scheduler.step()
    state.step += 1
    state.last_loss = state.epoch_losses[-1]


def _validate(parts: LoopParts, state: LoopState, callbacks) -> None:
    if parts.validation is None:
        return
    state.val_loss = parts.validation.loss(parts.unet, parts.conditioner, parts.device, parts.dtype)
    state.val_history.append((state.step, state.val_loss))
    _emit(callbacks, "on_validation", state)


def _epoch_generators(seed: int, epoch: int):
    import torch

    return torch.Generator().manual_seed(seed * 100_003 + epoch), random.Random(seed * 7_919 + epoch)


def _seed_global_rng(seed: int, epoch: int) -> None:
    """Network dropouts (kohya's and LyCORIS's modules) draw from torch's global RNG, as in kohya
    (which seeds it once): seeded per epoch, a run with dropout repeats and resumes exactly."""
    import torch

    torch.manual_seed(seed * 100_019 + epoch)


def _emit(callbacks, event: str, state: LoopState) -> None:
    for callback in callbacks:
        handler = getattr(callback, event, None)
        if handler is not None:
            handler(state)
