"""The shared training loop on the tiny model: it learns, it is deterministic, it stops on NaN."""

from __future__ import annotations

import math

import pytest

from lrfind.errors import ConfigError, TrainingStopped
from lrfind.training.batches import epoch_batches, epoch_items, process_caption
from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import train_config


def make_config(dataset, tmp_path, **overrides) -> TrainConfig:
    values = dict(train_data_dir=dataset, resolution=64, train_batch_size=2, max_train_steps=4,
                  network_dim=4, network_alpha=2.0, learning_rate=1e-3, network_train_unet_only=True,
                  output_dir=tmp_path / "out", output_name="t", progress=False, seed=1)
    values.update(overrides)
    return train_config(values)


@pytest.fixture(scope="module")
def scanned(example_dataset):
    from lrfind.data.kohya import scan_dataset

    return lambda cfg: scan_dataset(cfg.dataset)


def run(config, tiny, dataset, store, callbacks=()):
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    with lora_run(config, tiny, dataset, store) as parts:
        before = parts.validation.loss(parts.unet, parts.conditioner, parts.device)
        state = run_loop(parts, callbacks)
        weights = {k: v.clone() for k, v in parts.network.kohya_state_dict().items()}
    return before, state, weights


def test_loss_decreases_on_real_images(tiny, example_dataset, feature_store, scanned, tmp_path):
    config = make_config(example_dataset, tmp_path, max_train_steps=40, learning_rate=3e-3)
    before, state, _ = run(config, tiny, scanned(config), feature_store)
    assert state.step == 40
    assert state.val_loss < before * 0.97, (before, state.val_history)


def test_same_seed_same_weights_and_validation_is_bit_identical(tiny, example_dataset, feature_store, scanned, tmp_path):
    config = make_config(example_dataset, tmp_path)
    _, state_a, weights_a = run(config, tiny, scanned(config), feature_store)
    _, state_b, weights_b = run(config, tiny, scanned(config), feature_store)
    assert state_a.val_loss == state_b.val_loss  # bit-identical, not approximately
    assert all((weights_a[k] == weights_b[k]).all() for k in weights_a)
    _, state_c, _ = run(make_config(example_dataset, tmp_path, seed=2), tiny, scanned(config), feature_store)
    assert state_c.val_loss != state_a.val_loss


def test_validation_loss_is_a_pure_function_of_the_weights(tiny, example_dataset, feature_store, scanned, tmp_path):
    from lrfind.training.setup import lora_run

    config = make_config(example_dataset, tmp_path)
    with lora_run(config, tiny, scanned(config), feature_store) as parts:
        first = parts.validation.loss(parts.unet, parts.conditioner, parts.device)
        second = parts.validation.loss(parts.unet, parts.conditioner, parts.device)
    assert first == second and math.isfinite(first)


@pytest.mark.parametrize("optimizer,lr,args", [
    ("AdamW", 1e-3, {}), ("Lion", 3e-4, {}), ("DAdaptAdam", 1.0, {}), ("DAdaptation", 1.0, {"decouple": True}),
    ("DAdaptLion", 1.0, {}), ("Prodigy", 1.0, {"safeguard_warmup": True, "use_bias_correction": True}),
])
def test_each_optimizer_trains(optimizer, lr, args, tiny, example_dataset, feature_store, scanned, tmp_path):
    from lrfind.training.callbacks import CurveRecorder

    config = make_config(example_dataset, tmp_path, optimizer_type=optimizer, learning_rate=lr, optimizer_args=args)
    recorder = CurveRecorder()
    _, state, weights = run(config, tiny, scanned(config), feature_store, [recorder])
    assert state.step == 4 and math.isfinite(state.val_loss)
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_up" in k)  # it moved
    adaptive = optimizer not in ("AdamW", "Lion")
    assert all(math.isfinite(row[1]) and row[1] > 0 for row in recorder.rows) == adaptive


@pytest.mark.parametrize("scheduler", ["constant", "constant_with_warmup", "linear", "cosine",
                                       "cosine_with_restarts", "polynomial"])
def test_each_scheduler_runs(scheduler, tiny, example_dataset, feature_store, scanned, tmp_path):
    from lrfind.training.callbacks import CurveRecorder

    warmup = 2 if scheduler == "constant_with_warmup" else 0
    config = make_config(example_dataset, tmp_path, lr_scheduler=scheduler, lr_warmup_steps=warmup,
                         max_train_steps=6, lr_scheduler_num_cycles=2)
    recorder = CurveRecorder()
    run(config, tiny, scanned(config), feature_store, [recorder])
    lrs = [row[3] for row in recorder.rows]
    if scheduler == "constant":
        assert len(set(lrs)) == 1
    elif scheduler == "constant_with_warmup":
        assert lrs[0] < lrs[1] < lrs[2] == lrs[-1]
    else:
        assert lrs[-1] < lrs[0]


def test_non_finite_loss_stops_with_a_reason(tiny, example_dataset, feature_store, scanned, tmp_path):
    import torch

    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    config = make_config(example_dataset, tmp_path)
    with lora_run(config, tiny, scanned(config), feature_store) as parts:
        parts.latents = {k: torch.full_like(v, float("nan")) for k, v in parts.latents.items()}
        with pytest.raises(TrainingStopped, match="not finite"):
            run_loop(parts)


def test_text_encoder_lora_and_shuffled_captions_train(tiny, example_dataset, feature_store, scanned, tmp_path):
    config = make_config(example_dataset, tmp_path, network_train_unet_only=False, text_encoder_lr=5e-4,
                         shuffle_caption=True, keep_tokens=1, flip_aug=True, gradient_accumulation_steps=2,
                         min_snr_gamma=5.0, noise_offset=0.05)
    _, state, weights = run(config, tiny, scanned(config), feature_store)
    assert state.step == 4
    assert any(k.startswith("lora_te_") for k in weights)
    assert any(v.abs().sum() > 0 for k, v in weights.items() if k.startswith("lora_te_") and "lora_up" in k)


def test_adaptive_optimizer_with_two_lrs_is_refused_before_training(example_dataset, tmp_path):
    from lrfind.training.checks import preflight

    config = make_config(example_dataset, tmp_path, optimizer_type="Prodigy", learning_rate=1.0,
                         network_train_unet_only=False, text_encoder_lr=0.5)
    with pytest.raises(ConfigError, match="one lr"):
        preflight(config)


def test_epoch_batches_follow_buckets_and_are_reproducible(tiny, example_dataset, scanned, tmp_path):
    from lrfind.data.steps import dataset_steps_per_epoch

    config = make_config(example_dataset, tmp_path, resolution=128, train_batch_size=3)
    dataset = scanned(config)
    items = epoch_items(dataset.train_images, dataset.reg_images, 1.0)
    batches = epoch_batches(items, 3, seed=5, epoch=0)
    assert all(len({it.record.bucket for it in b}) == 1 for b in batches)
    assert len(batches) == dataset_steps_per_epoch(dataset, 3)
    assert sum(len(b) for b in batches) == sum(r.repeats for r in dataset.train_images)
    assert [[it.record.path for it in b] for b in batches] == [
        [it.record.path for it in b] for b in epoch_batches(items, 3, seed=5, epoch=0)]
    assert batches != epoch_batches(items, 3, seed=5, epoch=1)


def test_caption_shuffle_keeps_the_first_tokens():
    import random

    caption = "lrfcat, cat, orange fur, sitting, indoor, photo"
    seen = {process_caption(caption, True, 1, random.Random(i)) for i in range(20)}
    assert all(c.startswith("lrfcat, ") for c in seen) and len(seen) > 1
    assert all(sorted(c.split(", ")) == sorted(caption.split(", ")) for c in seen)
    assert process_caption(caption, False, 1, random.Random(0)) == caption
