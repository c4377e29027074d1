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
from lrfind.models.conditioning import UNetConditioning
from lrfind.models.size_conditioning import kohya_time_ids
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
        self.base_conditioning = None  # UNetConditioning of the prompts by the base text encoder(s)

    def time_ids(self, components) -> Optional[list[tuple[int, ...]]]:
        """SDXL's size conditioning of each prompt (a square image of the inputs' size, uncropped);
        None for a family without it."""
        if getattr(components, "text_encoder_2", None) is None:
            return None
        scale = 2 ** (len(components.vae.config.block_out_channels) - 1)
        height, width = (side * scale for side in self.inputs.shape[-2:])
        return [kohya_time_ids((width, height), (width, height))] * len(self.prompts)

    def predictions(self, unet, conditioning: UNetConditioning, device, dtype=None):
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
                    rows = conditioning.rows(self.prompt_index[s : s + size]).to(device)
                    pred = unet(self.inputs[s : s + size].to(device, dtype), self.steps[s : s + size].to(device),
                                **rows.unet_kwargs(dtype))
                    out.append(pred.sample.float().cpu())
        finally:
            unet.train(was_training)
        return torch.cat(out)

    def set_base(self, unet, conditioning: UNetConditioning, device, dtype=None) -> None:
        """Record the base model's predictions (call with no LoRA attached, or one at zero)."""
        self.base_conditioning = _detached_cpu(conditioning)
        self.base = self.predictions(unet, self.base_conditioning, device, dtype)

    def drift(self, unet, device, dtype=None, conditioning: Optional[UNetConditioning] = None) -> float:
        """Mean squared difference to the base predictions. `conditioning`: the prompts' through a
        LoRA'd text encoder, when it trains; None: the base text encoder's."""
        if self.base is None:
            raise RuntimeError("DriftProbe.set_base must run before drift")
        conditioning = self.base_conditioning if conditioning is None else conditioning
        diff = self.predictions(unet, conditioning, device, dtype).double() - self.base.double()
        return float((diff ** 2).mean().item())


def latent_shape(components, resolution: int) -> tuple[int, int, int]:
    """(channels, h, w) of a square image at `resolution` in the model's latent space."""
    scale = 2 ** (len(components.vae.config.block_out_channels) - 1)
    return (int(components.unet.config.in_channels), resolution // scale, resolution // scale)


def base_drift_probe(components, dataset: Dataset, resolution: int, *, clip_skip: int, max_token_length: int,
                     device, dtype=None, timesteps: Optional[Sequence[int]] = None) -> DriftProbe:
    """A DriftProbe for `dataset` with the base model's predictions (no LoRA may be attached)."""
    probe = DriftProbe(drift_prompts(dataset), latent_shape(components, resolution),
                       timesteps=timesteps or DRIFT_TIMESTEPS)
    probe.set_base(components.unet, _base_conditioning(components, probe, clip_skip, max_token_length), device, dtype)
    return probe


def _base_conditioning(components, probe: DriftProbe, clip_skip: int, max_token_length: int) -> UNetConditioning:
    import torch

    from lrfind.models.text_encoding import encode_prompts
    from lrfind.models.text_encoding_sdxl import encode_prompts_sdxl

    time_ids = probe.time_ids(components)
    if time_ids is None:
        return UNetConditioning(encode_prompts(components, probe.prompts, clip_skip=clip_skip,
                                               max_token_length=max_token_length, grad=False))
    hidden, pooled = encode_prompts_sdxl(components, probe.prompts, max_token_length=max_token_length, grad=False)
    return UNetConditioning(hidden, pooled, torch.tensor(time_ids, dtype=torch.float32))


def _detached_cpu(conditioning: UNetConditioning) -> UNetConditioning:
    keep = (lambda t: None if t is None else t.detach().float().cpu())
    return UNetConditioning(keep(conditioning.hidden_states), keep(conditioning.text_embeds), keep(conditioning.time_ids))


def drift_probe_on_device(components, dataset: Dataset, resolution: int, *, clip_skip: int, max_token_length: int,
                          mixed_precision: str) -> DriftProbe:
    """base_drift_probe on the device and dtype lora_run trains on (the networks moved there first,
    where lora_run would put them), so the base predictions are the trained model's own."""
    import torch

    from lrfind.training.setup import pick_device, place_model

    device, dtype, _ = pick_device(mixed_precision)
    place_model(components, device, dtype)
    return base_drift_probe(components, dataset, resolution, clip_skip=clip_skip, max_token_length=max_token_length,
                            device=device, dtype=None if dtype == torch.float32 else dtype)


def measure_drift(probe: DriftProbe, parts) -> float:
    """The drift of the LoRA being trained in `parts` (lrfind.training.loop.LoopParts); a trained
    text encoder's prompts go through its LoRA too."""
    import torch

    conditioning = None
    if parts.conditioner.trains_text_encoder:
        with torch.no_grad():
            conditioning = parts.conditioner.encode(probe.prompts, as_written=False, device=parts.device,
                                                    time_ids=probe.time_ids(parts.conditioner.components))
    return probe.drift(parts.unet, parts.device, parts.dtype, conditioning=conditioning)
