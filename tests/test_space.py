"""Search space: TOML parsing and errors, presets, suggest() with real Optuna trials, trial values."""

from __future__ import annotations

import json
import math
import re
from importlib import resources
from pathlib import Path

import optuna
import pytest

from lrfind.data.steps import dataset_steps_per_epoch
from lrfind.data.types import Concept, Dataset, ImageRecord
from lrfind.errors import ConfigError
from lrfind.optimizers.lion import LR_DIVISOR as LION_LR_DIVISOR
from lrfind.optimizers.lion import WEIGHT_DECAY_FACTOR as LION_WEIGHT_DECAY_FACTOR
from lrfind.study.dimensions import FloatDimension, IntDimension
from lrfind.study.space import load_space, preset_names
from lrfind.study.trial_params import TrialParams, suggest
from lrfind.study.stats import ConceptStats, DatasetStats
from lrfind.study.trial_values import plan_trial, trial_train_values
from lrfind.study.scoring import ObjectiveWeights
from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import train_config
from probe_reports import probe_with_lr

REPO = Path(__file__).resolve().parents[1]
MINIMAL = 'network_dim = [4, 8]\nnetwork_alpha_fraction = 1.0\nepochs = 2\n'
PROBE = probe_with_lr(1e-3, 8, 4, status="converged")
CONV_TYPES = ("locon", "lycoris_locon", "loha", "lokr")  # the network types with convs

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, field, expected", [
    ("network_dim = 16", "network_dim", IntDimension(choices=[16])),
    ("network_dim = [8, 16, 32]", "network_dim", IntDimension(choices=[8, 16, 32])),
    ("epochs = { range = [6, 12] }", "epochs", IntDimension(range=(6, 12))),
    ("[epochs]\nrange = [6, 12]\nstep = 2", "epochs", IntDimension(range=(6, 12), step=2)),
    ("lr_multiplier = { range = [0.25, 4] }", "lr_multiplier", FloatDimension(range=(0.25, 4.0))),
    ("network_alpha_fraction = [0.25, 0.5, 1.0]", "network_alpha_fraction",
     FloatDimension(choices=[0.25, 0.5, 1.0])),
    ("optimizer = ['adamw', 'LION']", "optimizer", None),  # canonical spellings, checked below
])
def test_dimension_forms(tmp_path, line, field, expected):
    base = {k: v for k, v in (l.split(" = ", 1) for l in MINIMAL.strip().splitlines())}
    base.pop(field, None)
    # tables must come after the plain keys in TOML
    text = "".join(f"{k} = {v}\n" for k, v in base.items()) + line + "\n"
    space = load_space(write(tmp_path, text))
    if expected is not None:
        assert getattr(space, field) == expected
    else:
        assert space.optimizer.choices == ["AdamW", "Lion"]


def test_defaults_of_minimal_space(tmp_path):
    space = load_space(write(tmp_path, MINIMAL))
    assert space.repeats is None
    assert space.lr_multiplier.choices == [1.0]
    assert space.optimizer.choices == ["AdamW"] and space.lr_scheduler.choices == ["constant"]
    assert space.objective.model_dump() == ObjectiveWeights().model_dump()  # same names and defaults


@pytest.mark.parametrize("text, message", [
    (MINIMAL + "epochs = [", "not valid TOML"),
    (MINIMAL + "network_rank = 8\n", "network_rank: unknown option"),
    (MINIMAL + "[fixed]\nresolutoin = 512\n", "fixed.resolutoin: unknown option"),
    ("network_dim = 8\nnetwork_alpha_fraction = 1.5\nepochs = 2\n", "alpha <= dim"),
    ("network_dim = 8\nnetwork_alpha_fraction = { range = [0.5, 2] }\nepochs = 2\n", "alpha <= dim"),
    ("network_dim = 8\nnetwork_alpha_fraction = 1\nepochs = { range = [12, 6] }\n", "low 12 is above high 6"),
    ("network_dim = 8\nnetwork_alpha_fraction = 1\nepochs = { choices = [2], range = [1, 3] }\n",
     "exactly one of choices"),
    ("network_dim = []\nnetwork_alpha_fraction = 1\nepochs = 2\n", "must not be empty"),
    ("network_dim = [8, 8]\nnetwork_alpha_fraction = 1\nepochs = 2\n", "repeat a value"),
    ("network_dim = 0\nnetwork_alpha_fraction = 1\nepochs = 2\n", "at least 1"),
    ("network_dim = 2048\nnetwork_alpha_fraction = 1\nepochs = 2\n", "up to 1024"),
    ("network_dim = 8\nnetwork_alpha_fraction = 0\nepochs = 2\n", "positive"),
    ("network_dim = 8\nepochs = 2\n", "network_alpha_fraction: Field required"),
    (MINIMAL + "optimizer = ['AdamW', 'SGD']\n", "unknown optimizer 'SGD'"),
    (MINIMAL + "lr_scheduler = 'warmup_cosine'\n", "unknown lr_scheduler"),
    (MINIMAL + "[fixed]\nresolution = 500\n", "multiple of 64"),
    (MINIMAL + "[fixed]\nresolution = '512,768'\n", "give one side"),
    (MINIMAL + "repeats = [1, 10000000]\n", "repeats up to 10,000"),
    (MINIMAL + "[fixed]\nweight_decay = inf\n", "fixed.weight_decay"),
    (MINIMAL + "[fixed]\nlr_rescale_rule = 'sqrt'\n", "unknown rescale rule"),
    (MINIMAL + "[objective]\nloss = 0\nclip_i = 0\nclip_t = 0\n", "at least one of loss"),
    (MINIMAL + "[budget]\ntrial_budget_steps = 10\neval_every_steps = 20\n", "eval_every_steps 20"),
])
def test_space_errors_are_one_line_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_space(path)
    text = str(err.value)
    assert message in text
    assert str(path) in text and "\n" not in text


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="character, concept, sdxl-character, sdxl-concept, sdxl-style, sdxl-tiny, style, tiny"):
        load_space("charcter")


def test_presets_load_and_configs_are_the_same_files():
    assert preset_names() == ["character", "concept", "sdxl-character", "sdxl-concept", "sdxl-style", "sdxl-tiny", "style", "tiny"]
    packaged = resources.files("lrfind.study").joinpath("presets")
    for name in preset_names():
        space = load_space(name)
        assert space.description
        shipped = (REPO / "configs" / f"{name}.toml").read_bytes()
        assert shipped == packaged.joinpath(f"{name}.toml").read_bytes(), f"configs/{name}.toml differs"
        assert load_space(REPO / "configs" / f"{name}.toml") == space
    assert sorted(p.stem for p in (REPO / "configs").glob("*.toml")) == preset_names()


def test_presets_follow_community_ranges():
    character, style = load_space("character"), load_space("style")
    assert 8 <= min(character.network_dim.choices) and max(character.network_dim.choices) <= 32
    assert min(style.network_dim.choices) >= 32
    assert style.lr_multiplier.highest < character.lr_multiplier.highest


def test_with_budget_overrides_and_validates():
    space = load_space("tiny").with_budget(trial_budget_steps=5)
    assert space.budget.trial_budget_steps == 5 and space.budget.eval_every_steps == 5
    with pytest.raises(ConfigError, match="trial_budget_steps"):
        load_space("tiny").with_budget(trial_budget_steps=0)


# --- suggest with real Optuna trials -------------------------------------------------------------

@pytest.mark.parametrize("preset", ["character", "style", "concept", "tiny"])
def test_suggest_stays_in_the_space(preset):
    space = load_space(preset)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(25):
        trial = study.ask()
        params = suggest(trial, space)
        assert trial.params == params.to_params()
        assert params.network_dim in space.network_dim.choices
        assert 0 < params.network_alpha <= params.network_dim
        fraction = space.network_alpha_fraction
        if fraction.range:
            assert fraction.range[0] <= params.network_alpha_fraction <= fraction.range[1]
        else:
            assert params.network_alpha_fraction in fraction.choices
        low, high = space.epochs.range or (min(space.epochs.choices), max(space.epochs.choices))
        assert low <= params.epochs <= high
        assert params.optimizer in space.optimizer.choices
        assert params.lr_scheduler in space.lr_scheduler.choices
        lo, hi = space.lr_multiplier.range
        assert lo <= params.lr_multiplier <= hi
        assert TrialParams.from_params(trial.params, space) == params
        study.tell(trial, 0.0)
    base = {"network_dim", "network_alpha_fraction", "epochs", "repeats", "lr_multiplier", "optimizer",
            "lr_scheduler", "network_type"}
    for trial in study.trials:  # conv_dim_fraction / lokr_factor only for the types that have them
        assert base <= set(trial.params) <= base | {"conv_dim_fraction", "lokr_factor"}
        assert ("lokr_factor" in trial.params) == (trial.params["network_type"] == "lokr"
                                                   and space.lokr_factor is not None)
        assert ("conv_dim_fraction" in trial.params) == (trial.params["network_type"] in CONV_TYPES
                                                         and space.conv_dim_fraction is not None)


def test_network_type_options_are_asked_only_of_their_types(tmp_path):
    space = load_space(write(tmp_path, MINIMAL + 'network_type = ["lora", "loha", "lokr"]\n'
                                                 "conv_dim_fraction = { range = [0.25, 1.0] }\n"
                                                 "lokr_factor = [4, 8]\n"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {}
    for _ in range(30):
        trial = study.ask()
        params = suggest(trial, space)
        seen[params.network_type] = trial.params
        study.tell(trial, 0.0)
    assert "conv_dim_fraction" not in seen["lora"] and "lokr_factor" not in seen["lora"]
    assert "conv_dim_fraction" in seen["loha"] and "lokr_factor" not in seen["loha"]
    assert {"conv_dim_fraction", "lokr_factor"} <= set(seen["lokr"])


@pytest.mark.parametrize("extra,needle", [
    ('network_type = ["lora", "dora"]\n', "unknown network_type 'dora'"),
    ('network_type = ["lora"]\nconv_dim_fraction = 0.5\n', "no network_type of ['lora'] has convs"),
    ('network_type = ["loha"]\nlokr_factor = 4\n', "does not include lokr"),
    ('network_type = ["lokr"]\nlokr_factor = 1\n', "LoKr factors are whole numbers >= 2"),
    ('network_type = ["locon"]\nconv_dim_fraction = 2.0\n', "fraction is at most 1"),
])
def test_bad_network_dimensions_are_config_errors(tmp_path, extra, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_space(write(tmp_path, MINIMAL + extra))


def test_without_repeats_dimension_there_is_no_repeats_param(tmp_path):
    space = load_space(write(tmp_path, MINIMAL))
    trial = optuna.create_study().ask()
    params = suggest(trial, space)
    assert params.repeats is None and "repeats" not in trial.params
    with pytest.raises(ConfigError, match="lack network_alpha_fraction, epochs"):
        TrialParams.from_params({"network_dim": 4}, space)


# --- stats and step math -------------------------------------------------------------------------

def record(name: str, repeats: int, bucket=(64, 64), is_reg=False) -> ImageRecord:
    return ImageRecord(path=Path(f"/d/{name}.png"), caption=name, caption_path=None, concept=name,
                       repeats=repeats, is_reg=is_reg, size=bucket, bucket=bucket, resized=bucket)


def concept(name: str, repeats: int, buckets: list, is_reg=False) -> Concept:
    images = tuple(record(f"{name}{i}", repeats, b, is_reg) for i, b in enumerate(buckets))
    return Concept(folder=Path(f"/d/{repeats}_{name}"), name=name, repeats=repeats, is_reg=is_reg, images=images)


def test_stats_match_kohya_step_count_with_buckets_and_reg_images():
    dataset = Dataset(root=Path("/d"), concepts=(
        concept("cat", 3, [(64, 64)] * 3 + [(64, 128)]), concept("cup", 1, [(128, 64)] * 2)),
        reg_concepts=(concept("animal", 2, [(64, 64)] * 5, is_reg=True),))
    stats = DatasetStats.from_dataset(dataset)
    for batch in (1, 2, 3):
        math_ = stats.step_math(stats.concept_repeats(None), epochs=1, batch_size=batch)
        assert math_.steps_per_epoch == dataset_steps_per_epoch(dataset, batch)
    assert DatasetStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    text = stats.step_math((3, 1), epochs=2, batch_size=2).text
    assert text.startswith("((4 images × 3 repeats + 2 images × 1 repeat = 14) + 14 reg) × 2 epochs / batch 2")


@pytest.mark.parametrize("repeats, expected", [(None, (10, 5)), (4, (4, 2)), (1, (1, 1)), (3, (3, 2)), (20, (20, 10))])
def test_repeats_scale_the_most_repeated_concept(repeats, expected):
    stats = DatasetStats("d", (ConceptStats("10_a", "a", 10, (((64, 64), 2),)),
                               ConceptStats("5_b", "b", 5, (((64, 64), 2),))))
    assert stats.concept_repeats(repeats) == expected


# --- trial values ---------------------------------------------------------------------------------

def one_concept_stats(images=20, repeats=10) -> DatasetStats:
    return DatasetStats("d", (ConceptStats(f"{repeats}_me", "me", repeats, (((512, 512), images),)),))


def lr_space(tmp_path, optimizer: str, extra: str = "") -> object:
    text = (f"network_dim = [8, 16]\nnetwork_alpha_fraction = [0.5, 1.0]\nepochs = 2\n"
            f"lr_multiplier = {{ range = [0.25, 4] }}\noptimizer = '{optimizer}'\n"
            f"[fixed]\ntrain_batch_size = 2\nweight_decay = 0.02\ntext_encoder_lr_fraction = 0.25\n{extra}")
    return load_space(write(tmp_path, text))


def params(optimizer="AdamW", dim=16, fraction=1.0, multiplier=2.0, epochs=2, scheduler="constant", repeats=None):
    return TrialParams(dim, fraction, epochs, repeats, multiplier, optimizer, scheduler)


# probe: lr 1e-3 at dim 8 alpha 4; trial dim 16 alpha 16: sqrt_alpha rescale (4/16)^0.5 -> lr 0.5e-3
@pytest.mark.parametrize("optimizer, extra, unet_lr, te_lr, args", [
    ("AdamW", "", 0.5e-3 * 2, 0.25e-3, {"weight_decay": 0.02}),
    ("Lion", "", 0.5e-3 * 2 / LION_LR_DIVISOR, 0.25e-3 / LION_LR_DIVISOR,
     {"weight_decay": 0.02 * LION_WEIGHT_DECAY_FACTOR}),
    ("AdamW", "lr_rescale_rule = 'none'\n", 1e-3 * 2, 0.5e-3, {"weight_decay": 0.02}),
    ("AdamW", "network_train_unet_only = true\n", 1e-3, None, {"weight_decay": 0.02}),
])
def test_lr_math(tmp_path, optimizer, extra, unet_lr, te_lr, args):
    values = trial_train_values(params(optimizer), PROBE, lr_space(tmp_path, optimizer, extra), one_concept_stats())
    assert values["unet_lr"] == pytest.approx(unet_lr) and values["learning_rate"] == values["unet_lr"]
    assert values["text_encoder_lr"] == (None if te_lr is None else pytest.approx(te_lr))
    assert values["optimizer_args"] == pytest.approx(args)
    assert values["optimizer_type"] == optimizer and values["network_alpha"] == 16.0
    train_config(dict(train_data_dir=tmp_path, **values))  # every key is a kohya name of a TrainConfig field


def test_prodigy_uses_lr_one_and_the_multiplier_as_d_coef(tmp_path):
    values = trial_train_values(params("Prodigy", multiplier=0.5), PROBE, lr_space(tmp_path, "Prodigy"),
                                one_concept_stats())
    assert values["unet_lr"] == values["text_encoder_lr"] == 1.0
    assert values["optimizer_args"]["d_coef"] == 0.5 and values["optimizer_args"]["safeguard_warmup"] is True
    train_config(dict(train_data_dir=tmp_path, **values))


def test_alpha_is_a_fraction_of_dim_with_three_digits():
    assert params(dim=16, fraction=0.123456).network_alpha == 1.98
    assert params(dim=32, fraction=1.0).network_alpha == 32.0


def test_probe_without_lr_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="probe status: stuck_at_d0"):
        trial_train_values(params(), probe_with_lr(None, 8, 1, status="stuck_at_d0"),
                           lr_space(tmp_path, "AdamW"), one_concept_stats())


BUDGET_SPACE = ("network_dim = 8\nnetwork_alpha_fraction = 1\nepochs = {{ range = [5, 10] }}\nrepeats = [5, 10]\n"
                "lr_scheduler = ['constant', 'cosine']\n"
                "[fixed]\ntrain_batch_size = 2\nlr_warmup_fraction = 0.1\n"
                "[budget]\ntrial_budget_steps = {budget}\neval_every_steps = 25\n")


# 20 images at batch 2: 10 steps per epoch per repeat. Longest run: 10 repeats x 10 epochs = 1000.
@pytest.mark.parametrize("budget, epochs, repeats, full, trial", [
    (200, 10, 10, 1000, 200),  # the longest run gets exactly the budget
    (200, 5, 10, 500, 100),  # shorter runs keep their relative length
    (200, 5, 5, 250, 50),
    (5000, 5, 5, 250, 250),  # everything fits: no scaling
])
def test_budget_scaling(tmp_path, budget, epochs, repeats, full, trial):
    space = load_space(write(tmp_path, BUDGET_SPACE.format(budget=budget)))
    plan = plan_trial(params(dim=8, epochs=epochs, repeats=repeats, scheduler="cosine"), PROBE, space,
                      one_concept_stats())
    assert plan.full_run.total_steps == full and plan.trial_steps == trial
    assert plan.train_values["max_train_steps"] == trial and plan.train_values["max_train_epochs"] is None
    assert plan.train_values["lr_warmup_steps"] == round(0.1 * trial)
    assert plan.validation.every_n_steps == 25
    assert plan.full_run_values["max_train_epochs"] == epochs
    assert plan.full_run_values["lr_warmup_steps"] == round(0.1 * full)
    assert plan.full_run.text == f"20 images × {repeats} repeats × {epochs} epochs / batch 2 = {full} steps"
    assert math.isclose(plan.budget_scale, min(1.0, budget / 1000))
    json.dumps(plan.to_dict())


def test_constant_scheduler_gets_no_warmup(tmp_path):
    space = load_space(write(tmp_path, BUDGET_SPACE.format(budget=200)))
    plan = plan_trial(params(dim=8, epochs=5, repeats=5), PROBE, space, one_concept_stats())
    assert plan.train_values["lr_warmup_steps"] == 0
