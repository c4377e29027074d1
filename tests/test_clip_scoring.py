"""CLIP scoring of trial samples: the tiny CLIP, loading a CLIP folder, CLIP-I/CLIP-T, saving samples."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data

from lrfind.config import DatasetConfig
from lrfind.data.images import load_bucket_pil
from lrfind.data.kohya import scan_dataset
from lrfind.errors import ModelError
from lrfind.scoring.clip import TINY_CLIP_NAME, load_clip_scorer, tiny_clip_scorer
from lrfind.scoring.samples import (
    clip_i_matrix,
    load_training_images,
    save_sample_grid,
    save_samples,
    score_samples,
)

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


@pytest.fixture(scope="module")
def scorer():
    return tiny_clip_scorer(seed=0)


@pytest.fixture(scope="module")
def photos():
    return [Image.fromarray(pixels).resize((96, 96)) for pixels in
            (data.astronaut(), data.chelsea(), data.coffee(), data.rocket())]


@pytest.fixture(scope="module")
def saved_clip(scorer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip") / "my-clip"
    scorer.model.save_pretrained(folder)
    return folder


def noise_images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)) for _ in range(count)]


def test_tiny_clip_is_deterministic_and_leaves_the_rng_alone(scorer, photos):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    again = tiny_clip_scorer(seed=0)
    assert torch.equal(torch.rand(1), expected_next)
    assert torch.equal(again.image_embeddings(photos), scorer.image_embeddings(photos))
    assert torch.equal(again.text_embeddings(["lrfcat in a park"]), scorer.text_embeddings(["lrfcat in a park"]))
    other_seed = tiny_clip_scorer(seed=1)
    assert not torch.allclose(other_seed.image_embeddings(photos), scorer.image_embeddings(photos))
    assert scorer.calibrated is False and scorer.name == TINY_CLIP_NAME
    assert scorer.model.config.vision_config.image_size == 64 and scorer.model.config.text_config.vocab_size == 49408


def test_embeddings_are_unit_rows_and_identical_inputs_give_cosine_one(scorer, photos):
    images = scorer.image_embeddings(photos + [photos[1].copy()])
    assert images.shape == (5, 32) and images.dtype == torch.float32
    assert torch.allclose(images.norm(dim=1), torch.ones(5), atol=1e-5)
    assert float(images[1] @ images[4]) == pytest.approx(1.0, abs=1e-5)
    assert float(images[0] @ images[1]) < 0.999  # different photos differ even for a random CLIP
    texts = scorer.text_embeddings(["lrfcat, portrait", "a red cup on a table", "lrfcat, portrait"])
    assert texts.shape == (3, 32)
    assert float(texts[0] @ texts[2]) == pytest.approx(1.0, abs=1e-5)
    assert float(texts[0] @ texts[1]) < 0.999
    assert scorer.image_embeddings([]).shape == (0, 32)


def test_many_images_are_embedded_in_batches_with_the_same_result(scorer, photos):
    many = photos * 5  # 20 images: two forward passes of EMBEDDING_BATCH
    embeddings = scorer.image_embeddings(many)
    assert torch.allclose(embeddings[16], scorer.image_embeddings(photos[:1])[0], atol=1e-5)


def test_clip_i_is_higher_for_a_set_with_itself_than_with_noise(scorer, photos):
    real = scorer.image_embeddings(photos)
    noise = scorer.image_embeddings(noise_images(4))
    assert float(clip_i_matrix(real, real).mean()) > float(clip_i_matrix(real, noise).mean()) + 0.02


@pytest.mark.parametrize("size, resized, box", [((100, 50), (128, 64), (32, 0, 96, 64)),
                                                ((48, 96), (64, 128), (0, 32, 64, 96))])
def test_preprocessing_matches_a_hand_computation(scorer, size, resized, box):
    rgba = Image.fromarray(data.chelsea()).resize(size).convert("RGBA")
    pixels = scorer.image_processor(images=[rgba.convert("RGB")], return_tensors="pt")["pixel_values"][0]
    # shorter side to 64 (bicubic), centre crop 64x64, scale to 0..1, CLIP mean/std
    crop = np.asarray(rgba.convert("RGB").resize(resized, Image.Resampling.BICUBIC).crop(box), dtype=np.float64) / 255
    expected = torch.from_numpy(((crop - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)).float()
    assert pixels.shape == (3, 64, 64)
    assert torch.allclose(pixels, expected, atol=1e-5)
    # RGBA input (opaque here) is flattened to RGB before embedding, not refused
    assert torch.allclose(scorer.image_embeddings([rgba]), scorer.image_embeddings([rgba.convert("RGB")]), atol=1e-6)


def test_load_clip_folder_round_trip(scorer, saved_clip, photos):
    loaded = load_clip_scorer(saved_clip)
    assert loaded.calibrated is True and loaded.name == "my-clip"
    assert torch.allclose(loaded.image_embeddings(photos), scorer.image_embeddings(photos), atol=1e-6)
    texts = ["lrfcat at the beach, sunset", "lrfcup"]
    assert torch.allclose(loaded.text_embeddings(texts), scorer.text_embeddings(texts), atol=1e-6)


def test_load_clip_folder_uses_its_own_tokenizer_and_preprocessing(scorer, saved_clip, tmp_path, photos):
    folder = tmp_path / "with-processor"
    scorer.model.save_pretrained(folder)
    scorer.tokenizer.save_pretrained(folder)
    processor = copy.deepcopy(scorer.image_processor)
    processor.image_mean = [0.5, 0.5, 0.5]
    processor.image_std = [0.5, 0.5, 0.5]
    processor.save_pretrained(folder)
    loaded = load_clip_scorer(folder)
    assert list(loaded.image_processor.image_mean) == [0.5, 0.5, 0.5]
    assert not torch.allclose(loaded.image_embeddings(photos), scorer.image_embeddings(photos), atol=1e-3)
    assert loaded.tokenizer("lrfcat")["input_ids"] == scorer.tokenizer("lrfcat")["input_ids"]


def _text_encoder_only(folder):
    from transformers import CLIPTextConfig, CLIPTextModel

    CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4)).save_pretrained(folder)


def _weights_missing_tensors(folder, scorer):
    scorer.model.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in scorer.model.state_dict().items() if not k.startswith("visual_projection")}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _pickle_only(folder, scorer):
    scorer.model.save_pretrained(folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


@pytest.mark.parametrize(
    "make, words",
    [
        (None, "no such folder"),
        (lambda folder, scorer: folder.mkdir(), "no config.json"),
        (lambda folder, scorer: _text_encoder_only(folder), "'clip_text_model' model"),
        (lambda folder, scorer: (folder.mkdir(), (folder / "config.json").write_text("{not json")), "not a valid JSON"),
        (lambda folder, scorer: (scorer.model.config.save_pretrained(folder)), "no weights"),
        (_weights_missing_tensors, "lack 1 tensors"),
        (_pickle_only, "--allow-pickle"),
    ],
)
def test_bad_clip_folders_are_one_line_model_errors(tmp_path, scorer, make, words):
    folder = tmp_path / "clip"
    if make is not None:
        make(folder, scorer)
    with pytest.raises(ModelError) as caught:
        load_clip_scorer(folder)
    message = str(caught.value)
    assert words in message and str(folder) in message and "\n" not in message


def test_load_training_images_takes_concepts_in_turn(example_dataset):
    dataset = scan_dataset(DatasetConfig(train_dir=example_dataset, resolution=64))
    images = load_training_images(dataset, limit=3)
    cat, cup = dataset.concepts
    expected = [cat.images[0], cup.images[0], cat.images[1]]
    assert [np.asarray(i).tolist() for i in images] == [np.asarray(load_bucket_pil(r)).tolist() for r in expected]
    assert len(load_training_images(dataset, limit=100)) == 8


def _random_lora(tiny, seed):
    from lrfind.network import LoraSpec, attach_lora

    scratch = dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                                  text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={})
    network = attach_lora(scratch, LoraSpec(4, 2.0))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in network.unet_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    state_dict = network.kohya_state_dict("fp32")
    network.detach()
    return state_dict


@pytest.fixture(scope="module")
def model(tiny):
    return dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                               text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={})


def test_score_samples_on_the_tiny_model(model, scorer, example_dataset, tmp_path):
    dataset = scan_dataset(DatasetConfig(train_dir=example_dataset, resolution=64))
    train_images = load_training_images(dataset, limit=4)
    prompts = [("lrfcat, portrait, close-up", 1234), ("lrfcup in a park, daylight", 1235)]
    weights_before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    lora = _random_lora(model, seed=3)
    sample = dict(size=64, steps=4, guidance=5.0)

    scores = score_samples(model, lora, prompts, train_images, scorer, **sample)

    assert all(torch.equal(weights_before[k], v) for k, v in model.unet.state_dict().items())
    assert [image.size for image in scores.images] == [(64, 64), (64, 64)]
    assert scores.prompts == [p for p, _ in prompts] and scores.seeds == [1234, 1235]
    for value in (scores.clip_i, scores.clip_t, *scores.clip_i_per_sample, *scores.clip_t_per_sample):
        assert math.isfinite(value) and -1.0 <= value <= 1.0
    assert scores.clip_i == pytest.approx(float(np.mean(scores.clip_i_per_sample)), abs=1e-6)
    assert scores.calibrated is False and scores.clip_model == TINY_CLIP_NAME
    metrics = json.loads(json.dumps(scores.metrics()))
    assert metrics["clip_calibrated"] is False and metrics["samples"][1]["seed"] == 1235

    # precomputed training embeddings give the same scores; the base model gives other images
    reference = scorer.image_embeddings(train_images)
    texts = scorer.text_embeddings([p for p, _ in prompts])  # and so do the prompts' (a study makes both once)
    again = score_samples(model, lora, prompts, reference, scorer, **sample, prompt_embeddings=texts)
    assert again.clip_i == pytest.approx(scores.clip_i, abs=1e-6)
    assert again.clip_t == pytest.approx(scores.clip_t, abs=1e-6)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(scores.images[0]))
    base = score_samples(model, None, prompts[:1], reference, scorer, **sample)
    assert not np.array_equal(np.asarray(base.images[0]), np.asarray(scores.images[0]))

    paths = save_samples(scores.images, tmp_path / "trials" / "0" / "samples", scores.prompts, scores.seeds)
    assert [p.name for p in paths] == ["sample_00.png", "sample_01.png"]
    with Image.open(paths[1]) as reread:
        assert reread.text == {"prompt": "lrfcup in a park, daylight", "seed": "1235"}
        assert np.array_equal(np.asarray(reread.convert("RGB")), np.asarray(scores.images[1]))
    grid = save_sample_grid(scores.images, tmp_path / "trials" / "0" / "grid.png")
    with Image.open(grid) as reread:
        assert reread.size == (128, 64)
    assert sorted(p.name for p in (tmp_path / "trials" / "0").rglob("*")) == [
        "grid.png", "sample_00.png", "sample_01.png", "samples"]  # no temp files left


def test_sample_grid_layout(tmp_path, photos):
    from lrfind.scoring.samples import sample_grid

    grid = sample_grid(photos + photos[:1], columns=2)
    assert grid.size == (192, 288)
    assert np.array_equal(np.asarray(grid.crop((96, 96, 192, 192))), np.asarray(photos[3]))
    assert np.asarray(grid.crop((96, 192, 192, 288))).max() == 0  # the empty cell stays black
    with pytest.raises(ValueError):
        sample_grid([])
