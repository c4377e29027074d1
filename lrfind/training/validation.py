"""Deterministic validation loss: the same weights always give the same number.

Per-step training loss is dominated by which timestep and noise were drawn, so two runs can't be
compared with it. Here every validation image is noised at fixed timesteps (200/400/600/800 by
default) with noise drawn from a fixed seed per (image, timestep), once; the loss is the mean
noise-prediction error over all of them, evaluated in fixed batches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from lrfind.data.types import ImageRecord
from lrfind.training.losses import training_target


def split_validation(
    records: Sequence[ImageRecord], fraction: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """(train, validation). With fraction 0 (or too few images) validate on the training images."""
    records = list(records)
    n_val = int(round(len(records) * fraction))
    if fraction <= 0 or n_val < 1 or len(records) - n_val < 1:
        return records, records
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    held_out = set(id(r) for r in shuffled[:n_val])
    return [r for r in records if id(r) not in held_out], [r for r in records if id(r) in held_out]


# Latent pixels per UNet call (h*w summed over the batch): 32 images at 128 px, 8 at 256 px, 2 at
# 512 px. Bigger calls run faster per image but hold every activation of the batch at once.
LATENT_PIXELS_PER_CALL = 32 * 16 * 16


@dataclass
class _Group:
    noisy: object  # Tensor [N, 4, h, w]
    timesteps: object  # Tensor [N]
    target: object  # Tensor [N, 4, h, w]
    captions: list[str]
    time_ids: Optional[list] = None  # SDXL: each row's size/crop conditioning (kohya_time_ids)


def validation_key(paths: Sequence, captions: Sequence[str], latents, *, timesteps: Sequence[int], seed: int,
                   prediction_type: str, zero_terminal_snr: bool = False) -> tuple:
    """What a ValidationSet is a function of (the model's noise schedule aside; `zero_terminal_snr`
    is the run's change to it): equal keys, equal sets."""
    shapes = tuple(tuple(latent.shape) for latent in latents)
    key = (tuple(str(p) for p in paths), tuple(captions), shapes, tuple(int(t) for t in timesteps), int(seed),
           prediction_type)
    return key + ("zero_terminal_snr",) if zero_terminal_snr else key


def shared_validation_set(memo: Optional[dict], key: tuple, build: Callable[[], "ValidationSet"]) -> "ValidationSet":
    """The ValidationSet for `key` from `memo` (a study's trials share one), built on first use."""
    if memo is None:
        return build()
    if key not in memo:
        memo[key] = build()
    return memo[key]


class ValidationSet:
    """Noised latents and targets made once; `loss` runs the UNet over them in large batches.

    A study builds one and hands it to every trial (lora_run's `validation_memo`): the noising and,
    while the text encoder is frozen, the caption embeddings are then prepared once per study.
    """

    def __init__(self, latents, captions: Sequence[str], *, timesteps: Sequence[int], seed: int,
                 noise_scheduler, prediction_type: str, batch_size: Optional[int] = None,
                 time_ids: Optional[Sequence[tuple]] = None):
        """`time_ids`: SDXL's size/crop conditioning of each image (kohya_time_ids, unflipped)."""
        import torch

        self.batch_size = batch_size  # None: as many as LATENT_PIXELS_PER_CALL allows
        self.size = len(latents) * len(timesteps)
        by_shape: dict[tuple, list] = {}
        for i, (latent, caption) in enumerate(zip(latents, captions)):
            for t in timesteps:
                # Noise made on the CPU from its own seed: identical on any device and run.
                gen = torch.Generator().manual_seed(seed * 1_000_003 + i * 1009 + int(t))
                noise = torch.randn(latent.shape, generator=gen, dtype=torch.float32)
                ids = time_ids[i] if time_ids is not None else None
                by_shape.setdefault(tuple(latent.shape), []).append((latent.float(), noise, int(t), caption, ids))
        self.groups = []
        for rows in by_shape.values():
            lat = torch.stack([r[0] for r in rows])
            noise = torch.stack([r[1] for r in rows])
            ts = torch.tensor([r[2] for r in rows], dtype=torch.long)
            noisy = noise_scheduler.add_noise(lat, noise, ts)
            target = training_target(noise_scheduler, lat, noise, ts, prediction_type)
            ids = [r[4] for r in rows] if time_ids is not None else None
            self.groups.append(_Group(noisy, ts, target, [r[3] for r in rows], ids))
        self._embeddings: dict[tuple, list] = {}  # (clip_skip, max_token_length, device) -> per group

    def chunk_size(self, group: _Group) -> int:
        if self.batch_size:
            return self.batch_size
        height, width = group.noisy.shape[-2:]
        return max(1, LATENT_PIXELS_PER_CALL // (height * width))

    def _frozen_embeddings(self, conditioner, device) -> Optional[list]:
        """Each group's caption embeddings, encoded once; None while the text encoder trains."""
        if conditioner.trains_text_encoder:
            return None
        key = (conditioner.clip_skip, conditioner.max_token_length, str(device))
        if key not in self._embeddings:
            self._embeddings[key] = [conditioner.encode(g.captions, as_written=True, device=device,
                                                        time_ids=g.time_ids) for g in self.groups]
        return self._embeddings[key]

    def loss(self, unet, conditioner, device, dtype=None) -> float:
        """Mean MSE over every (image, timestep), accumulated in float64."""
        import torch

        dtype = dtype or torch.float32
        per_sample = []
        was_training = unet.training
        unet.eval()
        try:
            with torch.inference_mode():
                frozen = self._frozen_embeddings(conditioner, device)
                for index, g in enumerate(self.groups):
                    size = self.chunk_size(g)
                    for s in range(0, len(g.captions), size):
                        noisy = g.noisy[s : s + size].to(device, dtype)
                        rows = slice(s, s + size)
                        cond = (frozen[index].rows(rows) if frozen is not None else
                                conditioner.encode(g.captions[rows], as_written=True, device=device,
                                                   time_ids=g.time_ids[rows] if g.time_ids is not None else None))
                        pred = unet(noisy, g.timesteps[rows].to(device), **cond.unet_kwargs(dtype)).sample.float()
                        err = (pred - g.target[s : s + size].to(device)) ** 2
                        per_sample.append(err.mean(dim=(1, 2, 3)).double())
        finally:
            unet.train(was_training)
        if not per_sample:
            return 0.0
        return float(torch.cat(per_sample).sum().item()) / self.size
