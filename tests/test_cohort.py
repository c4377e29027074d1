"""Cohorts (lrfind.network.cohort, lrfind.training.cohort): several runs trained at once through one
model train to what each trains alone, leave the model as it was, and end on their own."""

from __future__ import annotations

import pytest
import torch

from lrfind.data.kohya import scan_dataset
from lrfind.data.types import with_repeats
from lrfind.training.cohort import CohortMemberSetup, CohortRun, can_join_cohort, lora_cohort, run_cohort
from lrfind.training.kohya_names import train_config
from lrfind.training.loop import LoopState, run_loop
from lrfind.training.setup import lora_run

# A run's weights in a cohort against alone: batched kernels reassociate sums (losses agree to ~1e-7).
# Adam's and Lion's normalised updates would turn that noise into whole lr-sized steps where a
# gradient is zero in theory (the tiny U-Net's time_emb_proj: GroupNorm removes a per-channel shift),
# so weights are compared under AdamW with a large eps (updates linear in small gradients), losses
# under every optimizer.
WEIGHT_TOLERANCE = 1e-4
LINEAR_ADAMW = dict(optimizer_type="AdamW", optimizer_args={"eps": 1.0}, learning_rate=1.0)


def _config(example_dataset, tmp_path, **overrides):
    values = dict(train_data_dir=example_dataset, resolution=64, max_train_steps=4, network_dim=4, network_alpha=4.0,
                  network_train_unet_only=True, optimizer_type="AdamW", learning_rate=1e-3,
                  output_dir=tmp_path / "out", progress=False, seed=3, validation_split=0.25)
    return train_config({**values, **overrides})


def _alone(config, tiny, dataset, store):
    with lora_run(config, tiny, dataset, store) as parts:
        state = run_loop(parts)
        weights = {k: v.clone() for k, v in parts.network.kohya_state_dict().items()}
    return state, weights


def _together(configs, tiny, datasets, store, callbacks=None):
    setups = [CohortMemberSetup(c, d) for c, d in zip(configs, datasets)]
    with lora_cohort(setups, tiny, store) as (cohort, parts):
        runs = [CohortRun(p, (callbacks or {}).get(i, ()), LoopState(p.total_steps, p.steps_per_epoch))
                for i, p in enumerate(parts)]
        run_cohort(cohort, runs)
        weights = [{k: v.clone() for k, v in p.network.kohya_state_dict().items()} for p in parts]
    return runs, weights


def _same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=WEIGHT_TOLERANCE, atol=WEIGHT_TOLERANCE * 1e-2, msg=key)


@pytest.fixture()
def dataset(example_dataset, tmp_path):
    return scan_dataset(_config(example_dataset, tmp_path).dataset, log_warnings=False)


def test_each_run_trains_in_a_cohort_to_what_it_trains_alone(tiny, example_dataset, feature_store, tmp_path, dataset):
    """Other lrs, dims, alphas, seeds, schedules and lengths: each member's weights, losses and validation as alone."""
    configs = [_config(example_dataset, tmp_path, **LINEAR_ADAMW),
               _config(example_dataset, tmp_path, **{**LINEAR_ADAMW, "learning_rate": 3.0}, network_dim=8,
                       network_alpha=2.0, seed=11),
               _config(example_dataset, tmp_path, **LINEAR_ADAMW, max_train_steps=2, lr_scheduler="cosine")]
    runs, together = _together(configs, tiny, [dataset] * len(configs), feature_store)
    for config, run, weights in zip(configs, runs, together):
        assert run.outcome is None
        state, alone = _alone(config, tiny, dataset, feature_store)
        _same_weights(weights, alone)
        assert run.state.step == state.step == config.max_train_steps
        assert run.state.val_loss == pytest.approx(state.val_loss, rel=1e-5)
        assert run.state.epoch_losses == pytest.approx(state.epoch_losses, rel=1e-5)


def test_other_optimizers_and_locon_train_in_a_cohort_to_the_losses_they_reach_alone(tiny, example_dataset,
                                                                                   feature_store, tmp_path, dataset):
    configs = [_config(example_dataset, tmp_path),
               _config(example_dataset, tmp_path, optimizer_type="Lion", learning_rate=1e-4, seed=11,
                       network_args={"conv_dim": "2", "conv_alpha": "1"})]
    runs, _ = _together(configs, tiny, [dataset] * len(configs), feature_store)
    for config, run in zip(configs, runs):
        state, _ = _alone(config, tiny, dataset, feature_store)
        assert run.state.val_loss == pytest.approx(state.val_loss, rel=1e-4)
        assert run.state.epoch_losses == pytest.approx(state.epoch_losses, rel=1e-4)


def _bucketed_dataset(root):
    """Images of two buckets at 128 px (a tall one and squares), so data orders differ in shape."""
    import numpy as np
    from PIL import Image

    folder = root / "2_lrfcat cat"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (width, height) in enumerate([(256, 128), (128, 256), (128, 128), (256, 128)]):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text("lrfcat cat")
    return root


def test_runs_with_other_data_orders_train_through_their_own_buckets(tiny, feature_store, tmp_path, monkeypatch):
    """Other repeats and seeds put other buckets at the same step: those rows go through the model
    apart, the rest together, and each run trains as alone."""
    from lrfind.training import cohort

    root = _bucketed_dataset(tmp_path / "bucketed")
    configs = [_config(root, tmp_path, seed=seed, resolution=128, enable_bucket=True, validation_split=0.0,
                       max_train_steps=6, **LINEAR_ADAMW) for seed in (1, 2)]
    dataset = scan_dataset(configs[0].dataset, log_warnings=False)
    assert len({r.bucket for r in dataset.train_images}) == 2
    datasets = [dataset, with_repeats(dataset, {dataset.concepts[0].folder.name: 3})]
    batches, real_predict = [], cohort.predict
    monkeypatch.setattr(cohort, "predict", lambda parts, noisy, *a: batches.append(noisy.shape) or real_predict(
        parts, noisy, *a))
    runs, together = _together(configs, tiny, datasets, feature_store)
    assert any(shape[0] == 1 for shape in batches) and any(shape[0] == 2 for shape in batches)  # apart and together
    for config, data, weights in zip(configs, datasets, together):
        _same_weights(weights, _alone(config, tiny, data, feature_store)[1])


def test_a_cohort_leaves_the_model_as_it_was(tiny, example_dataset, feature_store, tmp_path, dataset):
    before = {name: type(module) for name, module in tiny.unet.named_modules()}
    grads = {name: p.requires_grad for name, p in tiny.unet.named_parameters()}
    _together([_config(example_dataset, tmp_path), _config(example_dataset, tmp_path, seed=9)], tiny,
              [dataset, dataset], feature_store)
    assert {name: type(module) for name, module in tiny.unet.named_modules()} == before
    assert {name: p.requires_grad for name, p in tiny.unet.named_parameters()} == grads
    assert not tiny.unet.training


class StopAt:
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            raise RuntimeError(f"stopped at {self.step}")


def test_a_run_stopped_by_its_callback_leaves_and_the_others_go_on(tiny, example_dataset, feature_store, tmp_path,
                                                                   dataset):
    configs = [_config(example_dataset, tmp_path), _config(example_dataset, tmp_path, seed=5, **LINEAR_ADAMW)]
    runs, together = _together(configs, tiny, [dataset, dataset], feature_store, callbacks={0: [StopAt(2)]})
    assert isinstance(runs[0].outcome, RuntimeError) and runs[0].state.step == 2
    assert runs[1].outcome is None and runs[1].state.step == 4
    _same_weights(together[1], _alone(configs[1], tiny, dataset, feature_store)[1])


def test_a_diverging_run_leaves_with_its_error(tiny, example_dataset, feature_store, tmp_path, dataset):
    from lrfind.errors import TrainingDiverged

    configs = [_config(example_dataset, tmp_path, learning_rate=1e30),
               _config(example_dataset, tmp_path)]
    runs, _ = _together(configs, tiny, [dataset, dataset], feature_store)
    assert isinstance(runs[0].outcome, TrainingDiverged)
    assert runs[1].outcome is None and runs[1].state.step == 4


def test_what_can_join_a_cohort(example_dataset, tmp_path):
    assert can_join_cohort(_config(example_dataset, tmp_path))
    assert can_join_cohort(_config(example_dataset, tmp_path, network_args={"conv_dim": "4"}))
    assert not can_join_cohort(_config(example_dataset, tmp_path, network_dropout=0.1))
    assert not can_join_cohort(_config(example_dataset, tmp_path, network_args={"rank_dropout": "0.1"}))
    assert not can_join_cohort(_config(example_dataset, tmp_path, network_module="lycoris.kohya",
                                       network_args={"algo": "loha"}))


def test_text_encoder_members_batches_and_accumulation_train_as_alone(tiny, example_dataset, feature_store, tmp_path,
                                                                      dataset):
    """A member training the text encoder conditions its captions through its own LoRA; batch 2 and
    gradient accumulation are each member's own."""
    configs = [_config(example_dataset, tmp_path, network_train_unet_only=False, text_encoder_lr=0.5, **LINEAR_ADAMW),
               _config(example_dataset, tmp_path, train_batch_size=2, gradient_accumulation_steps=2, seed=4,
                       **LINEAR_ADAMW),
               _config(example_dataset, tmp_path, seed=6, **LINEAR_ADAMW)]
    runs, together = _together(configs, tiny, [dataset] * len(configs), feature_store)
    assert any(key.startswith("lora_te_") for key in together[0]) and not any(
        key.startswith("lora_te_") for key in together[1])
    for config, run, weights in zip(configs, runs, together):
        state, alone = _alone(config, tiny, dataset, feature_store)
        _same_weights(weights, alone)
        assert run.state.val_loss == pytest.approx(state.val_loss, rel=1e-5)


def test_sdxl_members_train_as_alone(example_dataset, feature_store, tmp_path):
    """SDXL: pooled text embeddings and size conditioning concatenated row by row, both text encoders."""
    from lrfind.models.builtin import build_builtin

    tiny_sdxl = build_builtin("tiny-sdxl", 0)
    values = dict(pretrained_model_name_or_path="tiny-sdxl", **LINEAR_ADAMW)
    configs = [_config(example_dataset, tmp_path, **values),
               _config(example_dataset, tmp_path, **values, network_dim=8, seed=8, network_train_unet_only=False,
                       text_encoder_lr=0.5)]
    dataset = scan_dataset(configs[0].dataset, log_warnings=False)
    runs, together = _together(configs, tiny_sdxl, [dataset] * 2, feature_store)
    assert any(key.startswith("lora_te2_") for key in together[1])
    for config, run, weights in zip(configs, runs, together):
        state, alone = _alone(config, tiny_sdxl, dataset, feature_store)
        _same_weights(weights, alone)
        assert run.state.val_loss == pytest.approx(state.val_loss, rel=1e-5)
