"""Deterministic validation loss: the same weights always give the same number.

Per-step training loss is dominated by which timestep and noise were drawn, so two runs can't be
compared with it. Here every validation image is noised at fixed timesteps (200/400/600/800 by
default) with noise drawn from a fixed seed per (image, timestep), once; the loss is the mean
noise-prediction error over all of them, evaluated in fixed batches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from lrfind.data.types import ImageRecord


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


@dataclass
class _Group:
    noisy: object  # Tensor [N, 4, h, w]
    timesteps: object  # Tensor [N]
    target: object  # Tensor [N, 4, h, w]
    captions: list[str]


class ValidationSet:
    def __init__(self, latents, captions: Sequence[str], *, timesteps: Sequence[int], seed: int,
                 noise_scheduler, prediction_type: str, batch_size: int = 16):
        import torch

        from lrfind.training.losses import training_target

        self.batch_size = batch_size
        self.size = len(latents) * len(timesteps)
        by_shape: dict[tuple, list] = {}
        for i, (latent, caption) in enumerate(zip(latents, captions)):
            for t in timesteps:
                # Noise made on the CPU from its own seed: identical on any device and run.
                gen = torch.Generator().manual_seed(seed * 1_000_003 + i * 1009 + int(t))
                noise = torch.randn(latent.shape, generator=gen, dtype=torch.float32)
                by_shape.setdefault(tuple(latent.shape), []).append((latent.float(), noise, int(t), caption))
        self.groups = []
        for rows in by_shape.values():
            lat = torch.stack([r[0] for r in rows])
            noise = torch.stack([r[1] for r in rows])
            ts = torch.tensor([r[2] for r in rows], dtype=torch.long)
            noisy = noise_scheduler.add_noise(lat, noise, ts)
            target = training_target(noise_scheduler, lat, noise, ts, prediction_type)
            self.groups.append(_Group(noisy, ts, target, [r[3] for r in rows]))

    def loss(self, unet, conditioner, device, dtype=None) -> float:
        """Mean MSE over every (image, timestep), in float64 accumulation."""
        import torch

        total, count = 0.0, 0
        was_training = unet.training
        unet.eval()
        try:
            with torch.no_grad():
                for g in self.groups:
                    for s in range(0, len(g.captions), self.batch_size):
                        noisy = g.noisy[s : s + self.batch_size].to(device, dtype or torch.float32)
                        emb = conditioner.encode(g.captions[s : s + self.batch_size], as_written=True, device=device)
                        ts = g.timesteps[s : s + self.batch_size].to(device)
                        pred = unet(noisy, ts, emb.to(noisy.dtype)).sample.float()
                        err = (pred - g.target[s : s + self.batch_size].to(device)) ** 2
                        total += err.mean(dim=(1, 2, 3)).double().sum().item()
                        count += noisy.shape[0]
        finally:
            unet.train(was_training)
        return total / max(count, 1)
