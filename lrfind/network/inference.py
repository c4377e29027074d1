"""Sampling with network files: merge their weight deltas in for a while, generate, restore.

lrfind applies network files itself (W += weight * delta) rather than through diffusers'
`load_lora_weights`, because that injects peft layers into the model for good (and refuses LoHa and
LoKr), while samples during a study must leave the shared model exactly as it was. Plain LoRA and
kohya LoCon modules: delta = alpha/dim * up @ down, as kohya's `merge_to` (the interop test checks
this against diffusers). LyCORIS modules (LoHa, LoKr, Tucker LoCon): lycoris builds the module
from the file (`get_module` / `make_module`) and rebuilds the delta its forward adds.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence, Union

from lrfind.errors import ModelError
from lrfind.network.kohya_format import (
    ALPHA_SUFFIX,
    DOWN_SUFFIX,
    UP_SUFFIX,
    kohya_name_lookup,
    load_lora,
    module_names,
)
from lrfind.network.naming import has_two_text_encoders

LoraSource = Union[dict, str, os.PathLike]


def _state_dict_and_label(source: LoraSource) -> tuple[dict, str]:
    if isinstance(source, dict):
        return source, "the LoRA state dict"
    state_dict, _ = load_lora(source)
    return state_dict, str(Path(source))


def _weight_layers(model, part: str, naming=None) -> dict:
    """kohya name -> Linear / Conv2d of one model (inside a LoRA wrapper: its base layer).

    `naming`: the model's KohyaNaming (SDXL: SGM U-Net names, lora_te1_/lora_te2_); None: SD 1.x."""
    import torch

    layers = {path: module for path, module in model.named_modules()
              if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))}
    if naming is None:
        return {name: layers[path] for name, path in kohya_name_lookup(part, layers).items()}
    named = {}
    for path, layer in layers.items():
        try:
            named[naming.name(part, path)] = layer
        except ValueError:  # a block's container or an activation: not a layer a network file names
            continue
    return named


def model_layers(components) -> dict:
    """kohya name -> layer of every Linear / Conv2d a LoRA file of this model's family can name."""
    from lrfind.network.naming import naming_for, text_encoder_parts

    naming = naming_for(components)
    if not naming.sdxl:
        return {**_weight_layers(components.unet, "unet"), **_weight_layers(components.text_encoder, "text_encoder")}
    layers = _weight_layers(components.unet, "unet", naming)
    for part in text_encoder_parts(components):
        layers.update(_weight_layers(getattr(components, part), part, naming))
    return layers


def lora_delta(down, up, weight_shape):
    """The weight change of one LoRA module, up @ down, in the layer's weight shape (float32).

    Linear, 1x1 conv and kxk conv (kohya's LoCon-style down conv) as in kohya's `merge_to`.
    """
    import torch

    down, up = down.float(), up.float()
    if down.dim() == 4 and down.shape[2:] != (1, 1):
        delta = torch.nn.functional.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)
    else:
        delta = up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)
    return delta.reshape(weight_shape)


def lycoris_delta(state_dict: dict, name: str, layer):
    """The weight change of one LyCORIS module of a file, built by lycoris (float32).

    What the module's forward adds to the layer's weight at multiplier 1. Not lycoris'
    `get_diff_weight`: in lycoris-lora 4.1.3 that applies alpha/dim twice for LoHa and LoKr
    (`get_weight` already includes it), so a merge would disagree with training.
    """
    import torch
    from lycoris.modules import get_module, make_module

    module_type, params = get_module(state_dict, name)
    if module_type is None:
        raise ModelError(f"{name}: no LoRA, LoCon, LoHa or LoKr weights; re-save the file")
    params = tuple(p.float() if p is not None else None for p in params)
    with torch.random.fork_rng(devices=[]):  # lycoris initialises the module before loading
        module = make_module(module_type, params, name, layer).float().eval()
    with torch.no_grad():
        if hasattr(module, "get_weight"):  # LoHa, LoKr: scale included
            return module.get_weight(tuple(layer.weight.shape)).float()
        return module.get_diff_weight(1.0, tuple(layer.weight.shape))[0].float()


def _plain_lora(state_dict: dict, name: str) -> bool:
    suffixes = {key[len(name) + 1:] for key in state_dict if key.startswith(name + ".")}
    return suffixes <= {DOWN_SUFFIX[1:], UP_SUFFIX[1:], ALPHA_SUFFIX[1:]}


def _merges(components, state_dict: dict, label: str) -> Iterator[tuple[object, object]]:
    """(layer, delta at weight 1) for each module of a network state dict; ModelError if unmatched."""
    layers = model_layers(components)
    names = module_names(state_dict)
    unmatched = [name for name in names if name not in layers]
    if unmatched:
        family = "SDXL" if has_two_text_encoders(components) else "SD 1.x"
        raise ModelError(
            f"{label}: {len(unmatched)} of {len(names)} LoRA modules (e.g. {unmatched[0]}) match "
            f"no layer of this model; use a LoRA trained for this base model ({family})"
        )
    for name in names:
        layer = layers[name]
        if not _plain_lora(state_dict, name):
            yield layer, lycoris_delta(state_dict, name, layer)
            continue
        down, up = state_dict[name + DOWN_SUFFIX], state_dict[name + UP_SUFFIX]
        rank = down.shape[0]
        alpha_tensor = state_dict.get(name + ALPHA_SUFFIX)
        alpha = float(alpha_tensor.float().item()) if alpha_tensor is not None else float(rank)
        yield layer, lora_delta(down, up, layer.weight.shape) * (alpha / rank)


@contextmanager
def applied_loras(components, loras: Sequence[tuple[LoraSource, float]]) -> Iterator[None]:
    """Merge kohya LoRAs (state dicts or file paths, each with a weight) into the weights.

    Several LoRAs stack (their deltas add); any weight works, 0 = no change, > 1 exaggerates.
    On exit, even after an error, every touched weight gets back its saved original values, bit
    for bit. Only the touched weights are copied, so the memory cost is that of the LoRA layers.
    """
    import torch

    originals: dict[int, tuple[object, object]] = {}
    try:
        with torch.no_grad():
            for source, weight in loras:
                state_dict, label = _state_dict_and_label(source)
                for layer, delta in _merges(components, state_dict, label):
                    param = layer.weight
                    if id(param) not in originals:
                        originals[id(param)] = (param, param.detach().clone())
                    param.add_((float(weight) * delta).to(param.device, param.dtype))
        yield
    finally:
        with torch.no_grad():
            for param, saved in originals.values():
                param.copy_(saved)


def build_pipeline(components):
    """A diffusers StableDiffusionPipeline (SDXL: StableDiffusionXLPipeline) sharing the components'
    modules (no copies).

    DDIM (eta 0) so a seed fully determines an image; no safety checker (it needs weights
    from the hub, and samples are for judging training, not for publishing).
    """
    from transformers.utils import logging as transformers_logging

    # Importing the pipeline makes transformers warn that torchvision is missing (it falls back to
    # its PIL image processors, which is all lrfind uses): not a message for lrfind's users.
    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        from diffusers import DDIMScheduler, StableDiffusionPipeline
    finally:
        transformers_logging.set_verbosity(level)

    scheduler = DDIMScheduler.from_config(components.noise_scheduler.config,
                                          set_alpha_to_one=False)
    if has_two_text_encoders(components):
        from diffusers import StableDiffusionXLPipeline

        # No watermarker: it needs the invisible-watermark package, and it alters every image.
        pipeline = StableDiffusionXLPipeline(
            vae=components.vae, text_encoder=components.text_encoder, text_encoder_2=components.text_encoder_2,
            tokenizer=components.tokenizer, tokenizer_2=components.tokenizer_2, unet=components.unet,
            scheduler=scheduler, add_watermarker=False)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline
    pipeline = StableDiffusionPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate_images(
    components,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    width: int,
    height: int,
    steps: int = 20,
    guidance_scale: float = 7.5,
    negative_prompt: str = "",
    loras: Sequence[tuple[LoraSource, float]] = (),
    clip_skip: int = 1,
    max_token_length: int = 75,
) -> list:
    """One PIL image per (prompt, seed), with `loras` merged in for the duration.

    Images are made one at a time, each from its own CPU torch.Generator, so an image depends
    only on its prompt and seed (not on batch composition or device), and memory stays flat.
    Prompts are encoded as in training (kohya's clip_skip and max_token_length).
    """
    import torch

    from lrfind.models.text_encoding import encode_prompts  # lazy: lrfind --help loads lrfind.network
    from lrfind.models.text_encoding_sdxl import encode_prompts_sdxl

    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds; give one seed each")
    pipeline = build_pipeline(components)
    images = []
    with applied_loras(components, loras), torch.no_grad():
        for prompt, seed in zip(prompts, seeds):
            generator = torch.Generator(device="cpu").manual_seed(int(seed))
            if has_two_text_encoders(components):  # SDXL: the pooled embeddings too, as trained
                embeddings, pooled = encode_prompts_sdxl(components, [prompt, negative_prompt],
                                                         max_token_length=max_token_length, grad=False)
                text = dict(pooled_prompt_embeds=pooled[:1], negative_pooled_prompt_embeds=pooled[1:])
            else:
                embeddings = encode_prompts(components, [prompt, negative_prompt], clip_skip=clip_skip,
                                            max_token_length=max_token_length, grad=False)
                text = {}
            result = pipeline(prompt_embeds=embeddings[:1], negative_prompt_embeds=embeddings[1:], **text,
                              num_inference_steps=steps, guidance_scale=guidance_scale,
                              width=width, height=height, generator=generator, output_type="pil")
            images.append(result.images[0])
    return images
