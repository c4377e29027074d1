"""The study objective: arithmetic tables, weights from TOML, bad metrics, pareto terms, no torch."""

from __future__ import annotations

import math
import subprocess
import sys
import tomllib

import pytest

from lrfind.config import build
from lrfind.errors import ConfigError
from lrfind.study.scoring import (
    ObjectiveWeights,
    ScoreError,
    describe_objective,
    intermediate_value,
    objective_value,
    pareto_directions,
    pareto_values,
)

DEFAULT = ObjectiveWeights()


@pytest.mark.parametrize(
    "val_loss, baseline, clip_i, clip_t, weights, expected",
    [
        # learnt nothing, CLIP zero: the loss term alone, 1.0
        (0.2, 0.2, 0.0, 0.0, DEFAULT, 1.0),
        # defaults: 0.1/0.2 - 0.5*0.8 - 0.25*0.3 = 0.5 - 0.4 - 0.075
        (0.1, 0.2, 0.8, 0.3, DEFAULT, 0.025),
        # a loss worse than the base model's
        (0.3, 0.2, 0.5, 0.2, DEFAULT, 1.5 - 0.25 - 0.05),
        # negative cosines raise the objective
        (0.2, 0.2, -0.5, -1.0, DEFAULT, 1.0 + 0.25 + 0.25),
        # --score loss: CLIP scores are ignored and may be missing
        (0.15, 0.2, None, None, DEFAULT.loss_only(), 0.75),
        # custom weights
        (0.1, 0.4, 0.6, 0.2, ObjectiveWeights(loss=2.0, clip_i=1.0, clip_t=0.0), 0.5 - 0.6),
        # CLIP only: the loss may even be missing from the sum
        (0.1, 0.4, 0.6, 0.2, ObjectiveWeights(loss=0.0, clip_i=1.0, clip_t=1.0), -0.8),
    ],
)
def test_objective_table(val_loss, baseline, clip_i, clip_t, weights, expected):
    assert objective_value(val_loss, baseline, clip_i, clip_t, weights) == pytest.approx(expected, abs=1e-12)


def test_better_trials_get_lower_values():
    base = objective_value(0.18, 0.2, 0.6, 0.25, DEFAULT)
    assert objective_value(0.16, 0.2, 0.6, 0.25, DEFAULT) < base  # lower loss
    assert objective_value(0.18, 0.2, 0.7, 0.25, DEFAULT) < base  # more like the training images
    assert objective_value(0.18, 0.2, 0.6, 0.30, DEFAULT) < base  # follows the prompt better


@pytest.mark.parametrize("val_loss, baseline, expected", [(0.2, 0.2, 1.0), (0.05, 0.2, 0.25), (0.5, 0.25, 2.0)])
def test_intermediate_value_is_the_loss_ratio(val_loss, baseline, expected):
    assert intermediate_value(val_loss, baseline) == pytest.approx(expected)
    # the same scale as the objective's loss term with the default weights
    assert intermediate_value(val_loss, baseline) == pytest.approx(
        objective_value(val_loss, baseline, 0.0, 0.0, DEFAULT))


@pytest.mark.parametrize(
    "args, words",
    [
        ((math.nan, 0.2, 0.5, 0.2), "validation loss is nan"),
        ((math.inf, 0.2, 0.5, 0.2), "validation loss is inf"),
        ((0.1, 0.0, 0.5, 0.2), "baseline validation loss is 0.0"),
        ((0.1, -1.0, 0.5, 0.2), "must be > 0"),
        ((0.1, math.nan, 0.5, 0.2), "baseline validation loss is nan"),
        ((0.1, 0.2, math.nan, 0.2), "CLIP-I is nan"),
        ((0.1, 0.2, 0.5, None), "CLIP-T is missing"),
        ((0.1, 0.2, 1.5, 0.2), "outside [-1, 1]"),
    ],
)
def test_bad_metrics_raise_a_score_error_with_the_reason(args, words):
    with pytest.raises(ScoreError, match=None) as caught:
        objective_value(*args, DEFAULT)
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_intermediate_value_rejects_nan():
    with pytest.raises(ScoreError, match="nan"):
        intermediate_value(math.nan, 0.2)


def test_weights_from_a_space_toml_table():
    table = tomllib.loads("[objective]\nloss = 1.0\nclip_i = 0.8\nclip_t = 0.1\n")["objective"]
    weights = build(ObjectiveWeights, "space.toml [objective]", **table)
    assert (weights.loss, weights.clip_i, weights.clip_t) == (1.0, 0.8, 0.1)
    assert ObjectiveWeights() == ObjectiveWeights(loss=1.0, clip_i=0.5, clip_t=0.25)


@pytest.mark.parametrize(
    "values, words",
    [
        ({"clip_j": 0.5}, "clip_j: unknown option"),
        ({"clip_i": -0.1}, "clip_i"),
        ({"loss": math.inf}, "loss"),
        ({"loss": 0, "clip_i": 0, "clip_t": 0}, "all objective weights are 0"),
    ],
)
def test_bad_weights_are_one_line_config_errors(values, words):
    with pytest.raises(ConfigError) as caught:
        build(ObjectiveWeights, "configs/character.toml", **values)
    message = str(caught.value)
    assert words in message and "\n" not in message and message.startswith("configs/character.toml")


def test_loss_only_and_uses_clip():
    assert DEFAULT.uses_clip and not DEFAULT.loss_only().uses_clip
    assert ObjectiveWeights(loss=3.0).loss_only().loss == 3.0
    assert ObjectiveWeights(loss=0.0, clip_t=1.0).loss_only() == ObjectiveWeights(loss=1.0, clip_i=0.0, clip_t=0.0)


def test_pareto_terms_follow_the_positive_weights():
    assert pareto_directions(DEFAULT) == ["minimize", "maximize", "maximize"]
    assert pareto_values(0.1, 0.2, 0.7, 0.3, DEFAULT) == pytest.approx([0.5, 0.7, 0.3])
    clip_i_only = ObjectiveWeights(clip_t=0.0)
    assert pareto_directions(clip_i_only) == ["minimize", "maximize"]
    assert pareto_values(0.1, 0.2, 0.7, None, clip_i_only) == pytest.approx([0.5, 0.7])
    assert pareto_directions(DEFAULT.loss_only()) == ["minimize"]


def test_describe_objective():
    assert describe_objective(DEFAULT) == (
        "objective = 1 × val_loss / baseline_val_loss - 0.5 × CLIP-I - 0.25 × CLIP-T (lower is better)")
    assert describe_objective(ObjectiveWeights(loss=0, clip_t=0)) == "objective = -0.5 × CLIP-I (lower is better)"


def test_scoring_imports_no_torch():
    code = "import sys, lrfind.study.scoring; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
