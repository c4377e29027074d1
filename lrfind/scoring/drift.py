"""Drift from the base model: how much a LoRA changes the UNet where it should not.

A LoRA should change what the model draws for its trigger word and little else. Drift measures
the "else": on prompts without the trigger word (each concept's class tokens alone and in the
scenes of lrfind.scoring.prompts, and the regularisation images' captions when there are some),
the mean squared difference between the LoRA'd UNet's noise predictions and the base UNet's,

    drift = mean over (prompt, timestep, latent element) of (pred_lora - pred_base)^2

at fixed timesteps (DRIFT_TIMESTEPS) on fixed inputs: x_t is standard normal noise drawn on the
CPU from a seed per (prompt, timestep), which is what the UNet sees at those timesteps up to the
image content. Same weights, same number, on any device. A fresh LoRA (lora_up zero) gives 0;
0.0 also when the LoRA changes only the trigger word's meaning. The base predictions are made
once (`DriftProbe.set_base`, a study does it once per process) and every measurement compares
against them. The scale is the noise's (unit variance): a drift of 0.01 is a prediction moved by
about 0.1 of the noise's standard deviation per element.
"""

from __future__ import annotations

from typing import Optional, Sequence

from lrfind.data.types import Concept, Dataset
from lrfind.scoring.prompts import VALIDATION_SCENES
from lrfind.training.validation import LATENT_PIXELS_PER_CALL

DRIFT_TIMESTEPS = (250, 500, 750)  # early, middle and late denoising: composition to detail
DRIFT_SEED = 0
MAX_REG_CAPTIONS = 8  # regularisation captions used: enough variety, a fixed cost per measurement


def class_tokens(concept: Concept) -> str:
    """The folder name's words after the first: kohya's `N_<trigger> <class>` naming ("lrfcat cat" -> "cat")."""
    return " ".join(concept.name.split()[1:])


def _scene(scene: str, subject: str) -> str:
    return scene.format(trigger=subject).strip(" ,")


def drift_prompts(dataset: Dataset) -> list[str]:
    """Prompts without any trigger word: class tokens, the validation scenes with them, reg captions."""
    prompts: list[str] = []
    for concept in dataset.concepts:
        subject = class_tokens(concept)
        for text in ([subject] if subject else []) + [_scene(s, subject) for s in VALIDATION_SCENES]:
            if text and text not in prompts:
                prompts.append(text)
    reg_captions = sorted({r.caption for r in dataset.reg_images})[:MAX_REG_CAPTIONS]
    prompts += [c for c in reg_captions if c not in prompts]
    return prompts


class DriftProbe:
    """Fixed inputs for the drift measurement, and the base model's predictions on them."""

    def __init__(self, prompts: Sequence[str], latent_shape: tuple[int, int, int], *,
                 timesteps: Sequence[int] = DRIFT_TIMESTEPS, seed: int = DRIFT_SEED):
        import torch

        if not prompts:
            raise ValueError("drift needs at least one prompt")
        self.prompts, self.timesteps = list(prompts), tuple(int(t) for t in timesteps)
        rows = [(i, t) for i in range(len(self.prompts)) for t in self.timesteps]
        self.prompt_index = torch.tensor([i for i, _ in rows], dtype=torch.long)
        self.steps = torch.tensor([t for _, t in rows], dtype=torch.long)
        # CPU generators, one per (prompt, timestep): identical inputs on any device and in any run
        self.inputs = torch.stack([
            torch.randn(latent_shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + i * 1009 + t))
            for i, t in rows])
        self.base = None  # [rows, C, h, w] float32 on the CPU, from set_base
        self.base_embeddings = None  # the base text encoder's [prompts, L, D]

    def predictions(self, unet, embeddings, device, dtype=None):
        """The UNet's noise predictions on the fixed inputs, float32 on the CPU."""
        import torch

        dtype = dtype or torch.float32
        height, width = self.inputs.shape[-2:]
        size = max(1, LATENT_PIXELS_PER_CALL // (height * width))
        out = []
        was_training = unet.training
        unet.eval()
        try:
            with torch.inference_mode():
                for s in range(0, len(self.inputs), size):
                    emb = embeddings[self.prompt_index[s : s + size]].to(device, dtype)
                    pred = unet(self.inputs[s : s + size].to(device, dtype), self.steps[s : s + size].to(device), emb)
                    out.append(pred.sample.float().cpu())
        finally:
            unet.train(was_training)
        return torch.cat(out)

    def set_base(self, unet, embeddings, device, dtype=None) -> None:
        """Record the base model's predictions (call with no LoRA attached, or one at zero)."""
        self.base_embeddings = embeddings.detach().float().cpu()
        self.base = self.predictions(unet, self.base_embeddings, device, dtype)

    def drift(self, unet, device, dtype=None, embeddings=None) -> float:
        """Mean squared difference to the base predictions. `embeddings`: the prompts' through a
        LoRA'd text encoder, when it trains; None: the base text encoder's."""
        if self.base is None:
            raise RuntimeError("DriftProbe.set_base must run before drift")
        embeddings = self.base_embeddings if embeddings is None else embeddings
        diff = self.predictions(unet, embeddings, device, dtype).double() - self.base.double()
        return float((diff ** 2).mean().item())


def latent_shape(components, resolution: int) -> tuple[int, int, int]:
    """(channels, h, w) of a square image at `resolution` in the model's latent space."""
    scale = 2 ** (len(components.vae.config.block_out_channels) - 1)
    return (int(components.unet.config.in_channels), resolution // scale, resolution // scale)


def base_drift_probe(components, dataset: Dataset, resolution: int, *, clip_skip: int, max_token_length: int,
                     device, dtype=None, timesteps: Optional[Sequence[int]] = None) -> DriftProbe:
    """A DriftProbe for `dataset` with the base model's predictions (no LoRA may be attached)."""
    from lrfind.models.text_encoding import encode_prompts

    probe = DriftProbe(drift_prompts(dataset), latent_shape(components, resolution),
                       timesteps=timesteps or DRIFT_TIMESTEPS)
    embeddings = encode_prompts(components, probe.prompts, clip_skip=clip_skip, max_token_length=max_token_length,
                                grad=False)
    probe.set_base(components.unet, embeddings, device, dtype)
    return probe
