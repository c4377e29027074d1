"""Prompt encoding with kohya's semantics: clip skip, long prompts in 75-token chunks, gradients."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from lrfind.errors import ConfigError
from lrfind.models.text_encoding import encode_prompts, tokenize_prompts

BOS, EOS = 49406, 49407
SHORT = ["a photo of a cat", "1girl, solo, long hair, (smile:1.2)"]
LONG = ", ".join(["a very detailed photo of an astronaut riding a horse"] * 12)  # ~130 tokens


@pytest.mark.parametrize("max_token_length, positions", [(75, 77), (150, 152), (225, 227)])
def test_shapes_follow_kohya(tiny, max_token_length, positions):
    # kohya keeps <BOS>, the 75 inner states of each chunk and the last <EOS>: 75k + 2 positions.
    states = encode_prompts(tiny, SHORT, max_token_length=max_token_length)
    assert states.shape == (2, positions, tiny.text_encoder.config.hidden_size)
    assert torch.isfinite(states).all()


def test_chunks_are_bos_75_tokens_eos(tiny):
    chunks = tokenize_prompts(tiny.tokenizer, [LONG, SHORT[0]], max_token_length=225)
    assert chunks.shape == (2, 3, 77)
    assert (chunks[:, :, 0] == BOS).all() and (chunks[:, :, -1] == EOS).all()
    full = tiny.tokenizer(LONG, add_special_tokens=False).input_ids
    assert 75 < len(full) < 150
    assert chunks[0, 0, 1:76].tolist() == full[:75]
    assert chunks[0, 1, 1 : 1 + len(full) - 75].tolist() == full[75:]
    assert (chunks[1, 1:, 1:] == EOS).all()  # a short prompt's later chunks are all padding


def test_clip_skip_one_is_last_hidden_state_and_two_is_normed_penultimate(tiny):
    ids = tiny.tokenizer(SHORT, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        output = tiny.text_encoder(ids, output_hidden_states=True)
        final_norm = getattr(tiny.text_encoder, "text_model", tiny.text_encoder).final_layer_norm
        expected_skip2 = final_norm(output.hidden_states[-2])
    skip1 = encode_prompts(tiny, SHORT, clip_skip=1)
    skip2 = encode_prompts(tiny, SHORT, clip_skip=2)
    torch.testing.assert_close(skip1, output.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(skip2, expected_skip2, rtol=0, atol=0)
    assert not torch.allclose(skip1, skip2)


def test_long_prompt_second_chunk_is_encoded_on_its_own(tiny):
    long_states = encode_prompts(tiny, [LONG], max_token_length=150)
    chunks = tokenize_prompts(tiny.tokenizer, [LONG], max_token_length=150)
    with torch.no_grad():
        second = tiny.text_encoder(chunks[:, 1]).last_hidden_state
    torch.testing.assert_close(long_states[:, 76:151], second[:, 1:76], rtol=0, atol=0)
    # A prompt that fits in 75 tokens starts exactly like its 75-token encoding.
    short_150 = encode_prompts(tiny, SHORT, max_token_length=150)
    short_75 = encode_prompts(tiny, SHORT, max_token_length=75)
    torch.testing.assert_close(short_150[:, :76], short_75[:, :76], rtol=0, atol=0)


def test_deterministic(tiny):
    first = encode_prompts(tiny, SHORT + [LONG], clip_skip=2, max_token_length=225)
    second = encode_prompts(tiny, SHORT + [LONG], clip_skip=2, max_token_length=225)
    assert torch.equal(first, second)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"clip_skip": 0}, "clip_skip 0"),
        ({"clip_skip": 6}, "between 1 and 5"),  # the tiny text encoder has 5 layers
        ({"max_token_length": 100}, "75, 150, 225"),
    ],
)
def test_bad_options_are_config_errors(tiny, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        encode_prompts(tiny, SHORT, **kwargs)


def test_gradients_flow_only_when_the_text_encoder_trains(tiny):
    frozen = encode_prompts(tiny, SHORT)
    assert not frozen.requires_grad
    text_encoder = copy.deepcopy(tiny.text_encoder)
    text_encoder.final_layer_norm.weight.requires_grad_(True)  # stands in for a trainable TE LoRA
    training = dataclasses.replace(tiny, text_encoder=text_encoder)
    states = encode_prompts(training, SHORT, clip_skip=2, max_token_length=150)
    assert states.requires_grad
    states.square().mean().backward()
    assert text_encoder.final_layer_norm.weight.grad is not None
    assert not encode_prompts(training, SHORT, grad=False).requires_grad
