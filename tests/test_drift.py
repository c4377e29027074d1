"""Drift from the base model (lrfind.scoring.drift) on the tiny model: 0 for a fresh LoRA, growing
with training, deterministic; its prompts never hold the trigger word."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lrfind.data.types import Concept, Dataset, ImageRecord
from lrfind.scoring.drift import class_tokens, drift_prompts
from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import train_config
from lrfind.training.plan import ValidationPlan


def _record(folder: str, caption: str, is_reg: bool = False) -> ImageRecord:
    return ImageRecord(path=Path(f"/d/{folder}/a.png"), caption=caption, caption_path=None, concept=folder[3:],
                       repeats=1, is_reg=is_reg, size=(64, 64), bucket=(64, 64), resized=(64, 64))


def test_prompts_are_class_tokens_and_scenes_without_the_trigger_and_the_reg_captions():
    cat = Concept(Path("/d/10_lrfcat cat"), "lrfcat cat", 10, False, (_record("10_lrfcat cat", "lrfcat, cat"),))
    solo = Concept(Path("/d/10_mychar"), "mychar", 10, False, (_record("10_mychar", "mychar, smiling"),))
    reg = Concept(Path("/r/1_cat"), "cat", 1, True, (_record("1_cat", "a photo of a cat", True),))
    assert class_tokens(cat) == "cat" and class_tokens(solo) == ""
    prompts = drift_prompts(Dataset(Path("/d"), (cat, solo), (reg,)))
    assert "cat" in prompts and "cat in a park, daylight" in prompts and "portrait, close-up" in prompts
    assert "a photo of a cat" in prompts and len(prompts) == len(set(prompts))
    assert not any("lrfcat" in p or "mychar" in p for p in prompts)


@pytest.fixture(scope="module")
def dataset(example_dataset):
    from lrfind.data.kohya import scan_dataset

    return scan_dataset(_config(example_dataset, Path("/tmp")).dataset, log_warnings=False)


def _config(example_dataset, tmp_path, **overrides) -> TrainConfig:
    values = dict(train_data_dir=example_dataset, resolution=64, train_batch_size=2, max_train_steps=12,
                  network_dim=4, network_alpha=4.0, learning_rate=5e-3, network_train_unet_only=True,
                  output_dir=tmp_path / "out", output_name="t", progress=False, seed=1)
    return train_config({**values, **overrides})


def test_drift_is_zero_for_a_fresh_lora_grows_with_training_and_repeats(tiny, example_dataset, dataset,
                                                                       feature_store, tmp_path):
    from lrfind.scoring.drift import base_drift_probe
    from lrfind.study.trial_curves import DriftRecorder
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    probe = base_drift_probe(tiny, dataset, 64, clip_skip=1, max_token_length=75, device="cpu")
    again = base_drift_probe(tiny, dataset, 64, clip_skip=1, max_token_length=75, device="cpu")
    assert (probe.base == again.base).all() and (probe.inputs == again.inputs).all()  # deterministic
    assert probe.drift(tiny.unet, "cpu") == 0.0  # the base model itself

    def train():
        with lora_run(_config(example_dataset, tmp_path), tiny, dataset, feature_store,
                      validation_plan=ValidationPlan.at((1, 4, 12))) as parts:
            fresh = probe.drift(parts.unet, parts.device)  # LoRA attached, lora_up still zero
            recorder = DriftRecorder(probe, parts, {1: 1, 2: 4, 6: 12})
            run_loop(parts, [recorder])
        return fresh, recorder

    fresh, recorder = train()
    assert fresh == 0.0
    drifts = [recorder.by_epoch[e] for e in (1, 2, 6)]
    assert all(math.isfinite(d) for d in drifts) and 0 < drifts[0] < drifts[1] < drifts[2], drifts
    assert recorder.metrics(2) == {"drift": drifts[1], "epoch_drifts": {"1": drifts[0], "2": drifts[1],
                                                                        "6": drifts[2]}}
    assert recorder.metrics(None)["drift"] == drifts[2]  # no kept epoch: the last measured
    _, second = train()
    assert [second.by_epoch[e] for e in (1, 2, 6)] == drifts  # same weights, same numbers, bit for bit
    assert probe.drift(tiny.unet, "cpu") == 0.0  # the LoRA detached: the base model again


def test_trial_metrics_keep_drift_and_read_version_1_files():
    from lrfind.artifacts.base import ConfigError
    from lrfind.artifacts.trial_metrics import TRIAL_METRICS_VERSION, TrialMetrics

    metrics = TrialMetrics(number=1, val_loss=0.2, drift=0.01, epoch_drifts={"1": 0.005, "2": 0.01})
    assert metrics.to_dict()["schema_version"] == TRIAL_METRICS_VERSION == 4
    attrs = metrics.user_attributes()
    assert attrs["drift"] == 0.01 and attrs["epoch_drifts"] == {"1": 0.005, "2": 0.01}
    assert TrialMetrics.from_user_attributes(1, {}, attrs) == metrics
    old = TrialMetrics.from_dict({"schema_version": 1, "number": 1, "val_loss": 0.2})
    assert old.drift is None and "drift" not in old.to_dict()  # written only with a value
    with pytest.raises(ConfigError, match="schema version 5"):  # a newer lrfind's file
        TrialMetrics.from_dict({"schema_version": 5, "number": 1})


def test_drift_on_sdxl_conditions_the_unet_as_training_does(example_dataset, dataset, feature_store, tmp_path):
    """tiny-sdxl: the probe passes the pooled embedding and kohya's time ids (a square, uncropped
    image of the inputs' size); 0 fresh, > 0 once a LoCon with a text-encoder LoRA has trained
    (the trained encoders' conditioning goes through the same path, time ids included)."""
    from lrfind.models.builtin import build_builtin
    from lrfind.scoring.drift import base_drift_probe
    from lrfind.study.trial_curves import DriftRecorder
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    sdxl = build_builtin("tiny-sdxl", 0)
    probe = base_drift_probe(sdxl, dataset, 64, clip_skip=1, max_token_length=75, device="cpu")
    assert probe.time_ids(sdxl) == [(64, 64, 0, 0, 64, 64)] * len(probe.prompts)
    assert probe.base_conditioning.text_embeds.shape[0] == len(probe.prompts)
    assert probe.drift(sdxl.unet, "cpu") == 0.0
    config = _config(example_dataset, tmp_path, pretrained_model_name_or_path="tiny-sdxl",
                     network_train_unet_only=False, network_args={"conv_dim": 4, "conv_alpha": 4})
    with lora_run(config, sdxl, dataset, feature_store, validation_plan=ValidationPlan.at((1, 4, 12))) as parts:
        assert probe.drift(parts.unet, parts.device) == 0.0
        recorder = DriftRecorder(probe, parts, {1: 1, 6: 12})
        run_loop(parts, [recorder])
    assert 0 < recorder.by_epoch[1] < recorder.by_epoch[6], recorder.by_epoch
