"""Sampling with kohya LoRA files: lrfind's own merge vs diffusers' load_lora_weights, stacking."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from lrfind.errors import ModelError
from lrfind.network import (
    LoraSpec,
    applied_loras,
    attach_lora,
    build_pipeline,
    generate_images,
    save_lora,
)

SAMPLE = dict(width=64, height=64, steps=4, guidance_scale=5.0)


def private_copy(tiny):
    return dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                               text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={})


@pytest.fixture()
def model(tiny):
    return private_copy(tiny)


def trained_lora(components, seed, dim=8, alpha=2.0, text_encoder=True, scale=0.3):
    """A trained-looking kohya state dict: random non-zero up and down weights, alpha != dim."""
    network = attach_lora(components, LoraSpec(dim, alpha, train_text_encoder=text_encoder))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.unet_parameters() + network.text_encoder_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    state_dict = network.kohya_state_dict("fp32")
    network.detach()
    return state_dict


@pytest.fixture(scope="module")
def lora_files(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    scratch = private_copy(tiny)
    first = save_lora(folder / "first.safetensors", trained_lora(scratch, 1), {}, "fp32")
    second = save_lora(folder / "second.safetensors", trained_lora(scratch, 2, dim=4, alpha=1.0),
                       {}, "fp32")
    return first, second


def unet_and_te_outputs(components):
    g = torch.Generator().manual_seed(0)
    latents, context = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    ids = torch.tensor([[49406, 320, 2368, 49407] + [49407] * 73])
    with torch.no_grad():
        return (components.unet(latents, torch.tensor([300]), context).sample,
                components.text_encoder(ids).last_hidden_state)


def weights(components):
    return {**{f"unet.{k}": v.clone() for k, v in components.unet.state_dict().items()},
            **{f"te.{k}": v.clone() for k, v in components.text_encoder.state_dict().items()}}


def as_array(image):
    return np.asarray(image).astype(np.int16)


def test_weights_are_restored_exactly_even_after_an_error(model, lora_files):
    before = weights(model)
    with applied_loras(model, [(lora_files[0], 1.0), (lora_files[1], -0.7)]):
        changed = weights(model)
        assert sum(not torch.equal(before[k], changed[k]) for k in before) == 72 + 30
    with pytest.raises(KeyError):
        with applied_loras(model, [(lora_files[0], 2.5)]):
            raise KeyError("boom")
    after = weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_weight_zero_is_the_base_model_and_the_delta_is_linear(model, lora_files):
    base = unet_and_te_outputs(model)
    with applied_loras(model, [(lora_files[0], 0.0)]):
        assert all(torch.equal(a, b) for a, b in zip(unet_and_te_outputs(model), base))
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v"
    w0 = model.unet.get_submodule(name).weight.clone()
    deltas = {}
    for weight in (0.5, 1.0, 1.5):
        with applied_loras(model, [(lora_files[0], weight)]):
            deltas[weight] = model.unet.get_submodule(name).weight - w0
    assert deltas[1.0].abs().max() > 1e-3
    torch.testing.assert_close(deltas[0.5] * 2, deltas[1.0])
    torch.testing.assert_close(deltas[1.5], deltas[1.0] * 1.5)


def test_stacking_two_loras_adds_their_deltas(model, lora_files):
    w0 = weights(model)
    deltas = []
    for path in lora_files:
        with applied_loras(model, [(path, 1.0)]):
            deltas.append({k: v - w0[k] for k, v in weights(model).items()})
    with applied_loras(model, [(lora_files[0], 1.0), (lora_files[1], 1.0)]):
        both = weights(model)
    for key in w0:
        torch.testing.assert_close(both[key], w0[key] + deltas[0][key] + deltas[1][key])


def test_merge_equals_the_attached_network(model):
    """applied_loras(state dict) == the same weights live in LoRA modules (alpha/dim scale)."""
    network = attach_lora(model, LoraSpec(8, 2.0, train_text_encoder=True))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in network.unet_parameters() + network.text_encoder_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    live = unet_and_te_outputs(model)
    state_dict = network.kohya_state_dict()
    network.detach()
    with applied_loras(model, [(state_dict, 1.0)]):
        for got, want in zip(unet_and_te_outputs(model), live):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_diffusers_load_lora_weights_gives_the_same_images(tiny, lora_files, weight):
    """THE INTEROP TEST: a kohya file from lrfind in diffusers == lrfind's own inference."""
    ours = generate_images(tiny, ["a photo of a cat", "a dog"], [11, 12], **SAMPLE,
                           loras=[(lora_files[0], weight)])
    base = generate_images(tiny, ["a photo of a cat"], [11], **SAMPLE)
    pipeline = build_pipeline(private_copy(tiny))
    pipeline.load_lora_weights(str(lora_files[0]), adapter_name="first")
    pipeline.set_adapters(["first"], adapter_weights=[weight])
    theirs = [pipeline(prompt, negative_prompt="", num_inference_steps=SAMPLE["steps"],
                       guidance_scale=SAMPLE["guidance_scale"], width=64, height=64,
                       generator=torch.Generator().manual_seed(seed)).images[0]
              for prompt, seed in (("a photo of a cat", 11), ("a dog", 12))]
    for mine, diffusers_image in zip(ours, theirs):
        assert np.abs(as_array(mine) - as_array(diffusers_image)).max() <= 1
    assert np.abs(as_array(ours[0]) - as_array(base[0])).max() > 10  # the LoRA really acts


def test_diffusers_applies_the_text_encoder_part_too(tiny, tmp_path):
    """A text-encoder-only LoRA changes diffusers' output exactly as lrfind's."""
    state_dict = trained_lora(private_copy(tiny), seed=3, text_encoder=True)
    te_only = {k: v for k, v in state_dict.items() if k.startswith("lora_te_")}
    path = save_lora(tmp_path / "te.safetensors", te_only, {}, "fp32")
    ours = generate_images(tiny, ["a cat"], [5], **SAMPLE, loras=[(path, 1.0)])[0]
    base = generate_images(tiny, ["a cat"], [5], **SAMPLE)[0]
    pipeline = build_pipeline(private_copy(tiny))
    pipeline.load_lora_weights(str(path))
    theirs = pipeline("a cat", negative_prompt="", num_inference_steps=SAMPLE["steps"],
                      guidance_scale=SAMPLE["guidance_scale"], width=64, height=64,
                      generator=torch.Generator().manual_seed(5)).images[0]
    assert np.abs(as_array(ours) - as_array(theirs)).max() <= 1
    assert np.abs(as_array(ours) - as_array(base)).max() > 10


def test_images_depend_only_on_prompt_and_seed(tiny):
    alone = generate_images(tiny, ["a cat"], [7], **SAMPLE)
    batch = generate_images(tiny, ["a dog", "a cat", "a cat"], [1, 7, 8], **SAMPLE)
    assert alone[0].size == (64, 64) and alone[0].mode == "RGB"
    assert np.array_equal(as_array(batch[1]), as_array(alone[0]))
    assert not np.array_equal(as_array(batch[2]), as_array(alone[0]))
    with pytest.raises(ValueError, match="seed"):
        generate_images(tiny, ["a", "b"], [1], **SAMPLE)


def test_lora_for_another_model_is_a_model_error_and_nothing_changes(model, lora_files):
    before = weights(model)
    foreign = trained_lora(model, seed=4, text_encoder=False)
    foreign["lora_unet_input_blocks_4_1_proj_in.lora_down.weight"] = torch.zeros(8, 320)
    foreign["lora_unet_input_blocks_4_1_proj_in.lora_up.weight"] = torch.zeros(320, 8)
    with pytest.raises(ModelError, match="input_blocks_4_1_proj_in"):
        with applied_loras(model, [(lora_files[0], 1.0), (foreign, 1.0)]):
            pass
    after = weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_loras_apply_while_a_network_is_attached(model, lora_files):
    """Samples during training: a file on top of the live network; base layers restored after."""
    network = attach_lora(model, LoraSpec(4, 4), seed=0)
    attached = unet_and_te_outputs(model)[0]
    with applied_loras(model, [(lora_files[0], 1.0)]):
        assert not torch.equal(unet_and_te_outputs(model)[0], attached)
    assert torch.equal(unet_and_te_outputs(model)[0], attached)
    network.detach()


def test_clip_skip_uses_the_penultimate_layer_like_kohya(tiny):
    """kohya's clip_skip 2: hidden state of the second-to-last layer, then the final layer norm.

    (diffusers' own `clip_skip` argument fails with transformers >= 5.6: no `.text_model`.)
    """
    ours = generate_images(tiny, ["a cat"], [9], **SAMPLE, clip_skip=2)[0]
    default = generate_images(tiny, ["a cat"], [9], **SAMPLE)[0]
    ids = tiny.tokenizer(["a cat", ""], padding="max_length", max_length=77,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = tiny.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        embeddings = tiny.text_encoder.final_layer_norm(hidden)
    theirs = build_pipeline(tiny)(
        prompt_embeds=embeddings[:1], negative_prompt_embeds=embeddings[1:],
        num_inference_steps=SAMPLE["steps"], guidance_scale=SAMPLE["guidance_scale"], width=64,
        height=64, generator=torch.Generator().manual_seed(9)).images[0]
    assert np.abs(as_array(ours) - as_array(theirs)).max() <= 1
    # The tiny random model reacts weakly to the text: a small but certain change.
    assert np.abs(as_array(ours) - as_array(default)).max() >= 4
