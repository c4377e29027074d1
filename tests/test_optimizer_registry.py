"""The optimizer registry (lrfind.optimizers): one module per optimizer holds all lrfind knows of it.

Two kinds of test: the values every consumer read from its own table before the registry (written
out below from the code of the commit before it) are still what they read; and an optimizer defined
in one place, registered through `register_optimizer`, shows up everywhere.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import fields

import pytest
import torch

from lrfind.errors import ConfigError
from lrfind.optimizers import (LrInputs, OptimizerEntry, OptimizerValues, lr_summary, optimizer_entries,
                               optimizer_entry, optimizer_names, register_optimizer, scaled_lr_rule,
                               study_optimizer_names)
from lrfind.optimizers import registry
from lrfind.study.stats import DatasetStats
from probe_reports import probe_with_lr

# --- the tables before the registry (lrfind at 206ce58), value for value -------------------------

# training/optimizers.py: _REGISTRY (name, adaptive) in order, and _ALIASES
OLD_ADAPTIVE = {"AdamW": False, "AdamW8bit": False, "Lion": False, "DAdaptAdam": True, "DAdaptLion": True,
                "Prodigy": True}
OLD_ALIASES = {"dadaptation": "DAdaptAdam"}
# probe/derive.py: PROBE_FACTORS, ADAMW_FACTOR, LION_LR_DIVISOR, LION_WEIGHT_DECAY_FACTOR, prodigy_settings()
# the factors remeasured on tiny-pretrained, full module set (issue 15; round one: 1/6.85, 1/2.46)
OLD_PROBE_FACTORS = {"dadaptation": 1 / 0.56, "dadaptadam": 1 / 0.56, "prodigy": 1 / 0.71}
OLD_ADAMW_FACTOR, OLD_LION_LR_DIVISOR, OLD_LION_WEIGHT_DECAY_FACTOR = 1.0, 3.0, 3.0
OLD_PRODIGY_SETTINGS = {"lr": 1.0, "d_coef": 1.0, "use_bias_correction": True, "safeguard_warmup": True,
                        "weight_decay": 0.01, "betas": (0.9, 0.99), "decouple": True}
# probe/runner.py: PRODIGY_PROBE_ARGS, and DAdaptAdam's {"decouple": True}
OLD_PROBE_RUN = {"prodigy": ("Prodigy", {"safeguard_warmup": True, "use_bias_correction": True, "weight_decay": 0.01,
                                         "d_coef": 1.0, "betas": (0.9, 0.99), "decouple": True}),
                 "dadaptation": ("DAdaptAdam", {"decouple": True})}
# outputs.py: OPTIMIZER_STATE_SLOTS (its "lion8bit" named no optimizer lrfind builds)
OLD_STATE_SLOTS = {"adamw": 2, "adamw8bit": 1, "lion": 1, "dadaptadam": 3, "dadaptlion": 2, "prodigy": 4}
# study/space.py: STUDY_OPTIMIZERS
OLD_STUDY_OPTIMIZERS = ["AdamW", "Lion", "Prodigy"]
# study/trial_values.py: OPTIMIZER_RULES at probe lr 1e-3, multiplier 2, text-encoder fraction 0.25, wd 0.02
OLD_TRIAL_VALUES = {
    "AdamW": OptimizerValues(0.002, 0.0005, {"weight_decay": 0.02}),
    "Lion": OptimizerValues(0.0006666666666666666, 0.00016666666666666666, {"weight_decay": 0.06}),
    "Prodigy": OptimizerValues(1.0, 1.0, {"d_coef": 2.0, "use_bias_correction": True, "safeguard_warmup": True,
                                          "weight_decay": 0.01, "betas": [0.9, 0.99], "decouple": True}),
}
# study/recommend.py: _optimizer_text at unet_lr 1.2345e-4
OLD_SUMMARIES = [("AdamW", {"weight_decay": 0.01}, "AdamW at unet_lr 0.000123, weight decay 0.01"),
                 ("Lion", {"weight_decay": 0.03}, "Lion at unet_lr 0.000123, weight decay 0.03"),
                 ("Prodigy", {"d_coef": 0.5}, "Prodigy (lr 1.0, d_coef 0.5)"),
                 ("AdamW", {}, "AdamW at unet_lr 0.000123")]


def test_names_order_and_adaptive_flags_are_the_old_tables():
    assert optimizer_names() == list(OLD_ADAPTIVE)
    assert {e.name: e.adaptive for e in optimizer_entries()} == OLD_ADAPTIVE
    for alias, name in OLD_ALIASES.items():
        assert optimizer_entry(alias).name == name


def test_probe_factors_and_derived_lrs_are_the_old_tables():
    from lrfind.probe.derive import derive_settings

    for name, factor in OLD_PROBE_FACTORS.items():
        assert optimizer_entry(name).plateau_factor == factor
        settings = derive_settings(1e-3, name)
        assert settings.unet_lr == 1e-3 * factor
        assert settings.adamw_lr == settings.unet_lr * OLD_ADAMW_FACTOR
        assert settings.lion_lr == settings.unet_lr / OLD_LION_LR_DIVISOR
        assert settings.lion_weight_decay_factor == OLD_LION_WEIGHT_DECAY_FACTOR
        assert settings.prodigy == OLD_PRODIGY_SETTINGS
    assert [e.name for e in optimizer_entries() if e.plateau_factor is not None] == ["DAdaptAdam", "Prodigy"]


def test_probe_runs_with_the_old_optimizer_and_args(tmp_path):
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.runner import probe_train_config

    for probe_optimizer, (name, args) in OLD_PROBE_RUN.items():
        config = probe_train_config(ProbeConfig(dataset={"train_dir": tmp_path}, optimizer=probe_optimizer))
        assert (config.optimizer.type, config.optimizer.args, config.optimizer.learning_rate) == (name, args, 1.0)


def test_state_slots_are_the_old_table():
    from lrfind.outputs import state_bytes

    assert {e.name.lower(): e.state_slots for e in optimizer_entries()} == OLD_STATE_SLOTS
    for name, slots in OLD_STATE_SLOTS.items():
        assert state_bytes(1000, name) == 1000 * 4 * (1 + slots) + 64 * 1024
    assert state_bytes(1000, "SGDNesterov") == state_bytes(1000, "prodigy")  # unknown: the largest


def test_study_choices_lr_rules_and_summaries_are_the_old_tables():
    assert study_optimizer_names() == OLD_STUDY_OPTIMIZERS
    inputs = LrInputs(probe_lr=1e-3, multiplier=2.0, text_encoder_fraction=0.25, weight_decay=0.02)
    for name, values in OLD_TRIAL_VALUES.items():
        assert optimizer_entry(name).lr_rule(inputs) == values
    for name, args, text in OLD_SUMMARIES:
        assert optimizer_entry(name).summary(1.2345e-4, args) == text


@pytest.mark.parametrize("entry", optimizer_entries(), ids=lambda e: e.name)
def test_every_registered_optimizer_has_every_field(entry):
    for item in fields(OptimizerEntry):
        assert hasattr(entry, item.name)
    assert entry.name and ":" in entry.class_path and entry.state_slots >= 1
    assert entry.summary(1e-4, dict(entry.default_args)).strip()
    assert entry.adaptive == (entry.default_lr is not None)  # adaptive ones run at a fixed lr
    if entry.plateau_factor is not None:
        assert entry.adaptive and 0.1 <= entry.plateau_factor <= 10  # a measured correction of the plateau
    if entry.lr_divisor is not None:
        assert not entry.adaptive and entry.lr_rule is not None and entry.lr_divisor > 0
    with pytest.raises(TypeError):
        entry.default_args["x"] = 1  # shared by every reader: frozen


def test_registry_modules_import_no_torch_even_lazily():
    # pure numerics (the space, the derivation) read the registry: its modules must not name torch
    import inspect

    import lrfind.optimizers as package

    for module in [package, *(__import__(f"lrfind.optimizers.{n}", fromlist=["x"])
                              for n in ("entry", "registry", "adamw", "adamw8bit", "lion", "dadapt_adam",
                                        "dadapt_lion", "prodigy"))]:
        source = inspect.getsource(module)
        assert "import torch" not in source and "from torch" not in source, module.__name__


# --- one new optimizer, in one place ------------------------------------------------------------

SGD_TOY = OptimizerEntry(
    name="SGDToy", class_path="torch.optim:SGD", state_slots=1, summary=lr_summary("SGDToy"),
    aliases=("toy_sgd",), lr_divisor=2.0, weight_decay_factor=0.5, lr_rule=scaled_lr_rule(2.0, 0.5),
)
ADAPT_TOY = OptimizerEntry(
    name="DAdaptToy", class_path="dadaptation:DAdaptAdam", state_slots=3, summary=lr_summary("DAdaptToy"),
    adaptive=True, default_lr=1.0, default_args={"decouple": True}, plateau_factor=0.125,
)


@pytest.fixture
def toy_optimizers(monkeypatch):
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))  # the test's additions go away after
    register_optimizer(SGD_TOY)
    register_optimizer(ADAPT_TOY)


def test_a_new_optimizer_is_named_built_and_sized(toy_optimizers):
    from lrfind.outputs import state_bytes
    from lrfind.training.optimizers import build_optimizer, canonical_optimizer_name, is_adaptive

    assert optimizer_names()[-2:] == ["SGDToy", "DAdaptToy"]
    assert canonical_optimizer_name("TOY_SGD") == "SGDToy" and is_adaptive("dadapttoy")
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = build_optimizer("toy_sgd", [{"params": [param], "lr": 0.1, "name": "unet"}], weight_decay=0.0)
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["lr"] == 0.1
    with pytest.raises(ConfigError, match="DAdaptToy estimates one step size"):
        build_optimizer("DAdaptToy", [{"params": [param], "lr": 1.0}, {"params": [torch.nn.Parameter(torch.ones(1))],
                                                                        "lr": 0.5}])
    assert state_bytes(1000, "SGDToy") == 1000 * 4 * 2 + 64 * 1024


def test_a_new_probe_optimizer_factor_is_used_by_the_derivation(toy_optimizers):
    from lrfind.probe.derive import derive_settings

    settings = derive_settings(0.8, "DAdaptToy")
    assert settings.unet_lr == 0.8 * 0.125
    with pytest.raises(ConfigError, match="'SGDToy' is not one lrfind derives from; use one of: .*dadapttoy"):
        derive_settings(0.8, "SGDToy")  # no plateau factor: not a probe optimizer


def test_a_new_optimizer_goes_from_the_space_to_the_kohya_export(toy_optimizers, tmp_path):
    from lrfind.export.kohya_config import kohya_training_toml
    from lrfind.study.recommend import TrialRecord, recommend
    from lrfind.study.space import load_space

    space_file = tmp_path / "space.toml"
    space_file.write_text("network_dim = 8\nnetwork_alpha_fraction = 1.0\nepochs = 2\nlr_multiplier = 1.5\n"
                          "optimizer = ['AdamW', 'sgdtoy']\n[fixed]\nweight_decay = 0.04\n")
    space = load_space(space_file)
    assert space.optimizer.choices == ["AdamW", "SGDToy"]  # validated and spelled canonically
    adaptive_file = tmp_path / "adaptive.toml"
    adaptive_file.write_text("network_dim = 8\nepochs = 2\noptimizer = 'DAdaptToy'\n")
    with pytest.raises(ConfigError, match="unknown optimizer 'DAdaptToy'"):  # no lr rule: not a study choice
        load_space(adaptive_file)

    stats = {"name": "ds", "reg_images": [], "concepts": [
        {"folder": "10_me", "name": "me", "repeats": 10, "images_per_bucket": [[[512, 512], 4]]}]}
    probe = probe_with_lr(2e-4, 8, 8.0, status="converged")
    params = {"network_dim": 8, "network_alpha_fraction": 1.0, "epochs": 2, "lr_multiplier": 1.5,
              "optimizer": "SGDToy", "lr_scheduler": "constant"}
    rec = recommend([TrialRecord(0, "COMPLETE", 0.3, params)], space, probe, DatasetStats.from_dict(stats))
    assert rec.unet_lr == pytest.approx(2e-4 * 1.5 / 2.0) and rec.optimizer_args == {"weight_decay": 0.02}
    assert f"SGDToy at unet_lr {rec.unet_lr:.3g}, weight decay 0.02" in rec.summary
    # an accepted spelling is exported as kohya's name
    saved = rec.model_copy(update={"train_values": {**rec.train_values, "optimizer_type": "toy_sgd"}})
    toml = kohya_training_toml(saved, model_path="/m.safetensors", dataset_dir=tmp_path,
                               output_dir=tmp_path / "out", output_name="me", logging_dir=None)
    assert tomllib.loads(toml)["optimizer_arguments"]["optimizer_type"] == "SGDToy"


def test_a_clashing_name_is_refused(toy_optimizers):
    clash = OptimizerEntry(name="Other", class_path="torch.optim:SGD", state_slots=1, summary=lr_summary("Other"),
                           aliases=("dadaptation",))
    with pytest.raises(ConfigError, match="'dadaptation' is taken by DAdaptAdam"):
        register_optimizer(clash)
    assert math.isfinite(optimizer_entry("dadaptation").plateau_factor)
