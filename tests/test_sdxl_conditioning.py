"""SDXL conditioning as kohya's sdxl_train_network.py builds it, checked against what diffusers'
StableDiffusionXLPipeline hands its U-Net for the same prompt and sizes (tiny-sdxl)."""

from __future__ import annotations

import pytest
import torch

from lrfind.models.conditioning import UNetConditioning
from lrfind.models.size_conditioning import kohya_crop_ltrb, kohya_time_ids
from lrfind.models.text_encoding_sdxl import encode_prompts_sdxl, tokenize_prompts_padded
from lrfind.training.conditioning import TextConditioner

PROMPT = "a photo of a red fox in the snow, highly detailed"


@pytest.fixture(scope="module")
def tiny_sdxl():
    from lrfind.models.builtin import build_builtin

    return build_builtin("tiny-sdxl", 0)


def _pipeline(components):
    from lrfind.models.export import _pipeline as family_pipeline

    pipeline = family_pipeline(components)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _unet_inputs(pipeline, **call):
    """The keyword arguments the pipeline's first U-Net call gets."""
    seen = {}
    original = pipeline.unet.forward

    def spy(sample, timestep, encoder_hidden_states=None, **kwargs):
        seen.setdefault("hidden", encoder_hidden_states.detach().clone())
        added = kwargs["added_cond_kwargs"]
        seen.setdefault("added", {k: v.detach().clone() for k, v in added.items()})
        return original(sample, timestep, encoder_hidden_states, **kwargs)

    pipeline.unet.forward = spy
    try:
        pipeline(PROMPT, num_inference_steps=1, guidance_scale=1.0, output_type="latent",
                 generator=torch.Generator().manual_seed(0), **call)
    finally:
        del pipeline.unet.forward
    return seen


@pytest.mark.parametrize("original,bucket,flip", [((1000, 750), (64, 48), False), ((480, 800), (64, 96), True)])
def test_conditioning_equals_what_the_sdxl_pipeline_gives_its_unet(tiny_sdxl, original, bucket, flip):
    ids = kohya_time_ids(original, bucket, flip)
    seen = _unet_inputs(_pipeline(tiny_sdxl), height=bucket[1], width=bucket[0], original_size=ids[0:2],
                        crops_coords_top_left=ids[2:4], target_size=ids[4:6])
    conditioner = TextConditioner(tiny_sdxl, {}, clip_skip=1, max_token_length=75, trains_text_encoder=False)
    ours = conditioner.encode([PROMPT], as_written=True, device="cpu", time_ids=[ids])
    assert ours.hidden_states.shape == (1, 77, 32 + 64)
    assert torch.equal(ours.hidden_states, seen["hidden"])
    assert torch.equal(ours.text_embeds, seen["added"]["text_embeds"])
    assert ours.text_embeds.shape == (1, 48)
    assert torch.equal(ours.time_ids, seen["added"]["time_ids"])
    assert ours.time_ids.tolist() == [[float(v) for v in ids]]


def test_kohya_time_ids_by_hand():
    # 1000x750 (4:3) into a 1024x768 bucket: same aspect, nothing offset.
    assert kohya_time_ids((1000, 750), (1024, 768)) == (750, 1000, 0, 0, 768, 1024)
    # 600x900 (2:3) into 640x896: the bucket is wider, so the height fits (896) and the fitted
    # width is 896 * 2/3 = 597.33; kohya's left offset (640 - 597.33) // 2 = 21, right 618.33.
    left, top, right, bottom = kohya_crop_ltrb((640, 896), (600, 900))
    assert (left, top, bottom) == (21.0, 0, 896) and right == pytest.approx(618.333, abs=1e-3)
    assert kohya_time_ids((600, 900), (640, 896)) == (900, 600, 0, 21, 896, 640)
    # Flipped: the left offset measured from the right edge, int(640 - 618.33) = 21.
    assert kohya_time_ids((600, 900), (640, 896), flip=True) == (900, 600, 0, 21, 896, 640)
    # A tall bucket for a wide image: the width fits (896), the fitted height 896 * 896/1152 = 696.9,
    # top offset (1152 - 696.9) // 2 = 227.
    assert kohya_time_ids((1152, 896), (896, 1152)) == (896, 1152, 227, 0, 1152, 896)
    # Asymmetric floors: 701x500 into 1024x704 -> fitted width 987.1..., left 18, right 1005.1 -> flip 18.
    assert kohya_time_ids((701, 500), (1024, 704), flip=True)[3] == int(1024 - (18 + 704 * 701 / 500))


def test_long_prompts_chunk_as_kohya(tiny_sdxl):
    long_prompt = ", ".join(["a very detailed photo of an astronaut riding a horse"] * 12)
    hidden, pooled = encode_prompts_sdxl(tiny_sdxl, [long_prompt, "a cat"], max_token_length=225)
    assert hidden.shape == (2, 227, 96) and pooled.shape == (2, 48)
    short_hidden, short_pooled = encode_prompts_sdxl(tiny_sdxl, ["a cat"], max_token_length=75)
    # The pooled output is the first chunk's: a short prompt's equals its 75-token encoding.
    assert torch.allclose(pooled[1], short_pooled[0], atol=1e-6)
    chunks = tokenize_prompts_padded(tiny_sdxl.tokenizer_2, [long_prompt, "a cat"], 225)
    eos, pad = tiny_sdxl.tokenizer_2.eos_token_id, tiny_sdxl.tokenizer_2.pad_token_id
    assert chunks.shape == (2, 3, 77)
    # kohya's get_input_ids fix-ups: a chunk cut inside the text ends in <EOS>, an empty chunk
    # starts <BOS> <EOS>.
    assert chunks[0, 0, -1] == eos and chunks[1, 2, 1] == eos and chunks[1, 2, 2] == pad


def test_unet_kwargs_per_family():
    hidden = torch.ones(2, 77, 8, dtype=torch.float64)
    plain = UNetConditioning(hidden).unet_kwargs(torch.float32)
    assert set(plain) == {"encoder_hidden_states"} and plain["encoder_hidden_states"].dtype == torch.float32
    sdxl = UNetConditioning(hidden, torch.zeros(2, 4), torch.zeros(2, 6)).rows(slice(1, 2))
    kwargs = sdxl.unet_kwargs(torch.float16)
    assert kwargs["added_cond_kwargs"]["time_ids"].shape == (1, 6)
    assert kwargs["added_cond_kwargs"]["text_embeds"].dtype == torch.float16
    with pytest.raises(ValueError):
        UNetConditioning(hidden, torch.zeros(2, 4))
