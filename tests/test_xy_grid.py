"""X/Y grid of epochs x LoRA weights on the tiny model, and the suggested epoch (tables)."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lrfind.final.xy_grid import TILE_GAP, grid_layout, save_xy_grid, suggest_epoch, xy_grid
from lrfind.network import LoraSpec, attach_lora, generate_images, save_lora

SAMPLE = dict(size=64, steps=4)
PROMPTS = [("a photo of lrfcat cat", 11), ("a red cup on a table", 12)]


@pytest.fixture(scope="module")
def model(tiny):
    """A private copy: LoRA merges are undone bit for bit, but the shared fixture stays untouched."""
    return dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet), text_encoder=copy.deepcopy(tiny.text_encoder),
                               _fingerprints={})


def random_lora(components, seed: int) -> dict:
    """A trained-looking kohya state dict: random up weights (a fresh LoRA's are zero), alpha != dim."""
    network = attach_lora(components, LoraSpec(4, 2.0, train_text_encoder=False))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.unet_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    state_dict = network.kohya_state_dict("fp32")
    network.detach()
    return state_dict


@pytest.fixture(scope="module")
def epoch_files(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    scratch = dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                                  text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={})
    return [(epoch, save_lora(folder / f"run-{epoch:06d}.safetensors", random_lora(scratch, epoch), {}, "fp32"))
            for epoch in (2, 1)]  # out of order on purpose: rows are sorted by epoch


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


def reference(model, prompt, seed, loras=()):
    return generate_images(model, [prompt], [seed], width=64, height=64, steps=4, loras=loras)[0]


def test_grid_tiles_are_epochs_by_weights_and_weight_zero_is_the_base_model(model, epoch_files):
    prompt, seed = PROMPTS[0]
    grid = xy_grid(model, epoch_files, weights=(0.0, 1.0), prompts_seeds=[(prompt, seed)], **SAMPLE)
    layout = grid_layout([1, 2], (0.0, 1.0), 1, (64, 64))
    gap = TILE_GAP
    assert grid.size == layout.size == (layout.label_width + 2 * 64 + gap, 2 * layout.header_height + 2 * (64 + gap))
    tile = {(row, col): pixels(grid.crop(layout.tile_box(0, row, col))) for row in range(2) for col in range(2)}
    base = pixels(reference(model, prompt, seed))
    assert np.array_equal(tile[0, 0], base) and np.array_equal(tile[1, 0], base)
    epoch_one = dict(epoch_files)[1]
    assert np.array_equal(tile[0, 1], pixels(reference(model, prompt, seed, [(epoch_one, 1.0)])))  # row 0 = epoch 1
    assert np.abs(tile[0, 1] - base).mean() > 1  # the LoRA changes the image
    assert not np.array_equal(tile[0, 1], tile[1, 1])  # two epochs, two different LoRAs
    labels = pixels(grid.crop((0, 0, layout.label_width, grid.size[1])))
    assert (labels < 128).any()  # row labels are drawn in the margin


def test_one_section_per_prompt(model, epoch_files):
    grid = xy_grid(model, epoch_files[:1], weights=(1.0,), prompts_seeds=PROMPTS, **SAMPLE)
    layout = grid_layout([2], (1.0,), 2, (64, 64))
    assert grid.size == layout.size and grid.size[1] == 2 * layout.section_height
    for section, (prompt, seed) in enumerate(PROMPTS):
        expected = reference(model, prompt, seed, [(epoch_files[0][1], 1.0)])
        assert np.array_equal(pixels(grid.crop(layout.tile_box(section, 0, 0))), pixels(expected))


def test_save_xy_grid_writes_a_png_atomically(tmp_path):
    image = Image.new("RGB", (40, 30), (10, 200, 30))
    path = save_xy_grid(image, tmp_path / "final" / "xy_grid.png")
    with Image.open(path) as reread:
        assert reread.format == "PNG" and np.array_equal(pixels(reread), pixels(image))
    assert [p.name for p in path.parent.iterdir()] == ["xy_grid.png"]


@pytest.mark.parametrize("kwargs", [dict(lora_files=[]), dict(weights=()), dict(prompts_seeds=[]),
                                    dict(size=60)])
def test_bad_grid_requests_are_refused_before_any_sampling(model, epoch_files, kwargs):
    call = dict(lora_files=epoch_files, weights=(1.0,), prompts_seeds=PROMPTS[:1], size=64, steps=4)
    call.update(kwargs)
    with pytest.raises(ValueError):
        xy_grid(model, call.pop("lora_files"), call.pop("weights"), **call)


# --- suggest_epoch --------------------------------------------------------------------------------

NAN = math.nan


def rows(*table):
    return [{"epoch": e, "val_loss": v, "clip_i": c} for e, v, c in table]


@pytest.mark.parametrize("table,expected,reason_has", [
    # a clear minimum wins whatever CLIP says
    (rows((1, 0.20, 0.9), (2, 0.15, 0.5), (3, 0.18, 0.8)), 2, "lowest validation loss"),
    # within 0.5%: CLIP-I breaks the tie, even for a later epoch
    (rows((1, 0.2000, 0.70), (2, 0.1995, 0.60), (3, 0.2003, 0.80)), 3, "CLIP-I"),
    # equal CLIP-I among tied epochs: the earliest (less overfit)
    (rows((4, 0.1000, 0.75), (5, 0.1001, 0.75), (6, 0.1002, 0.75)), 4, "CLIP-I"),
    # equal loss, no CLIP: the earliest, never a later one
    (rows((3, 0.1, None), (1, 0.1, None), (2, 0.1, None)), 1, "earliest"),
    # CLIP-I missing for one tied epoch: not compared; earliest tied epoch
    (rows((1, 0.1003, None), (2, 0.1000, 0.9)), 1, "earliest"),
    # just outside the tolerance: not tied, the lower loss wins despite worse CLIP
    (rows((1, 0.1006, 0.99), (2, 0.1000, 0.10)), 2, "lowest validation loss"),
    # NaN / missing losses are skipped (a diverged epoch), NaN CLIP counts as missing
    (rows((1, NAN, 0.9), (2, 0.3, NAN), (3, None, 0.9), (4, 0.31, 0.5)), 2, "lowest validation loss"),
    # a single epoch
    (rows((7, 0.2, None)), 7, "lowest validation loss"),
])
def test_suggest_epoch(table, expected, reason_has):
    epoch, reason = suggest_epoch(table)
    assert epoch == expected
    assert reason.startswith(f"epoch {expected}") and reason_has in reason


def drift_rows(*table):
    return [{"epoch": e, "val_loss": v, "clip_i": None, "drift": d} for e, v, d in table]


@pytest.mark.parametrize("table,expected,reason_has", [
    # held-out images and drift at every epoch: a later epoch that drifts further must gain > 0.5 %
    (drift_rows((1, 0.2000, 0.01), (2, 0.1995, 0.02), (3, 0.1990, 0.03)), 1, "more drift"),
    (drift_rows((1, 0.2000, 0.01), (2, 0.1900, 0.02), (3, 0.1895, 0.03)), 2, "more drift"),
    # a clear minimum that also drifts less: it, with the plain reason
    (drift_rows((1, 0.20, 0.03), (2, 0.15, 0.02)), 2, "lowest held-out loss"),
    # drift missing at one epoch: the rule without drift (0.5 % ties: the earliest)
    ([*drift_rows((1, 0.2000, 0.01), (2, 0.1995, 0.02)), {"epoch": 3, "val_loss": 0.1990, "clip_i": None}], 2,
     "earliest"),
])
def test_suggest_epoch_weighs_drift_as_the_study_s_sweep(table, expected, reason_has):
    epoch, reason = suggest_epoch(table)
    assert epoch == expected and reason.startswith(f"epoch {expected}") and reason_has in reason, reason


def test_suggest_epoch_tolerance_is_relative():
    table = rows((1, 1000.0, 0.9), (2, 996.0, 0.1))  # 0.4% apart: tied at 0.5%, not at 0.1%
    assert suggest_epoch(table)[0] == 1
    assert suggest_epoch(table, tie_tol=0.001)[0] == 2
    assert suggest_epoch(rows((1, 0.2001, 0.9), (2, 0.2, 0.1)), tie_tol=0)[0] == 2


@pytest.mark.parametrize("table,tol", [(rows((1, NAN, 0.5), (2, None, 0.6)), 0.005), ([], 0.005),
                                       (rows((1, 0.1, 0.5)), -0.1)])
def test_suggest_epoch_refuses_what_it_cannot_rank(table, tol):
    with pytest.raises(ValueError):
        suggest_epoch(table, tie_tol=tol)
