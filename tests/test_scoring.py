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
    objective_terms,
    objective_value,
    pareto_names,
    pareto_directions,
    pareto_values,
    TrialScores,
)

DEFAULT = ObjectiveWeights().without_dino()  # a study without --dino
WITH_DINO = ObjectiveWeights()


def _scores(val_loss, baseline, clip_i, clip_t, drift=0.0) -> TrialScores:
    return TrialScores(val_loss=val_loss, baseline_val_loss=baseline, drift=drift, clip_i=clip_i, clip_t=clip_t)


@pytest.mark.parametrize(
    "val_loss, baseline, drift, clip_i, clip_t, weights, expected",
    [
        # learnt nothing, no drift, CLIP zero: the loss term alone, 1.0
        (0.2, 0.2, 0.0, 0.0, 0.0, DEFAULT, 1.0),
        # defaults: 0.1/0.2 + 1*0.02 - 0.5*0.8 - 0.25*0.3 = 0.5 + 0.02 - 0.4 - 0.075
        (0.1, 0.2, 0.02, 0.8, 0.3, DEFAULT, 0.045),
        # a loss worse than the base model's
        (0.3, 0.2, 0.0, 0.5, 0.2, DEFAULT, 1.5 - 0.25 - 0.05),
        # negative cosines raise the objective
        (0.2, 0.2, 0.0, -0.5, -1.0, DEFAULT, 1.0 + 0.25 + 0.25),
        # --score loss: CLIP scores are ignored and may be missing; drift keeps its weight
        (0.15, 0.2, 0.05, None, None, DEFAULT.loss_only(), 0.75 + 0.05),
        # custom weights, drift weighed 4x: 2*0.25 + 4*0.01 - 0.6
        (0.1, 0.4, 0.01, 0.6, 0.2, ObjectiveWeights(loss=2.0, drift=4.0, clip_i=1.0, clip_t=0.0, dino=0.0),
         0.5 + 0.04 - 0.6),
        # drift weight 0: drift ignored and may be missing
        (0.1, 0.2, None, 0.0, 0.0, ObjectiveWeights(drift=0.0, dino=0.0), 0.5),
        # CLIP only: the loss may even be missing from the sum
        (0.1, 0.4, 0.0, 0.6, 0.2, ObjectiveWeights(loss=0.0, clip_i=1.0, clip_t=1.0, dino=0.0), -0.8),
    ],
)
def test_objective_table(val_loss, baseline, drift, clip_i, clip_t, weights, expected):
    scores = _scores(val_loss, baseline, clip_i, clip_t, drift)
    assert objective_value(scores, weights) == pytest.approx(expected, abs=1e-12)
    terms = objective_terms(scores, weights)
    assert terms.value == pytest.approx(expected, abs=1e-12)
    assert sum(terms.as_dict().values()) == pytest.approx(expected, abs=1e-12)


def test_terms_are_signed_and_weighted():
    terms = objective_terms(_scores(0.1, 0.2, 0.8, 0.4, drift=0.03), DEFAULT)
    assert terms.as_dict() == pytest.approx({"loss": 0.5, "drift": 0.03, "clip_i": -0.4, "clip_t": -0.1})


def test_better_trials_get_lower_values():
    base = objective_value(_scores(0.18, 0.2, 0.6, 0.25, drift=0.02), DEFAULT)
    assert objective_value(_scores(0.16, 0.2, 0.6, 0.25, drift=0.02), DEFAULT) < base  # lower loss
    assert objective_value(_scores(0.18, 0.2, 0.6, 0.25, drift=0.01), DEFAULT) < base  # changes the base model less
    assert objective_value(_scores(0.18, 0.2, 0.7, 0.25, drift=0.02), DEFAULT) < base  # more like the held-out images
    assert objective_value(_scores(0.18, 0.2, 0.6, 0.30, drift=0.02), DEFAULT) < base  # follows the prompt better


def test_default_drift_weight_makes_a_typical_drift_a_few_percent_of_the_loss():
    # benchmarks/RESULTS.md (overfitting curve, tiny pretrained): 0.005-0.02 at a fitting lr
    for drift in (0.005, 0.02):
        terms = objective_terms(_scores(0.2, 0.2, 0.0, 0.0, drift=drift), DEFAULT)
        assert 0.004 <= terms.drift / terms.loss <= 0.03


@pytest.mark.parametrize("val_loss, baseline, expected", [(0.2, 0.2, 1.0), (0.05, 0.2, 0.25), (0.5, 0.25, 2.0)])
def test_intermediate_value_is_the_loss_ratio(val_loss, baseline, expected):
    assert intermediate_value(val_loss, baseline) == pytest.approx(expected)
    # the same scale as the objective's loss term with the default weights
    assert intermediate_value(val_loss, baseline) == pytest.approx(
        objective_terms(_scores(val_loss, baseline, 0.0, 0.0), DEFAULT).loss)


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
        ((0.1, 0.2, 0.5, 0.2, None), "drift is missing"),
        ((0.1, 0.2, 0.5, 0.2, math.inf), "drift is inf"),
        ((0.1, 0.2, 0.5, 0.2, -0.1), "cannot be negative"),
    ],
)
def test_bad_metrics_raise_a_score_error_with_the_reason(args, words):
    with pytest.raises(ScoreError, match=None) as caught:
        objective_value(_scores(*args), DEFAULT)
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_intermediate_value_rejects_nan():
    with pytest.raises(ScoreError, match="nan"):
        intermediate_value(math.nan, 0.2)


def test_weights_from_a_space_toml_table():
    table = tomllib.loads("[objective]\nloss = 1.0\ndrift = 2.5\nclip_i = 0.8\nclip_t = 0.1\n")["objective"]
    weights = build(ObjectiveWeights, "space.toml [objective]", **table)
    assert (weights.loss, weights.drift, weights.clip_i, weights.clip_t) == (1.0, 2.5, 0.8, 0.1)
    assert ObjectiveWeights() == ObjectiveWeights(loss=1.0, drift=1.0, clip_i=0.5, clip_t=0.25)


@pytest.mark.parametrize(
    "values, words",
    [
        ({"clip_j": 0.5}, "clip_j: unknown option"),
        ({"clip_i": -0.1}, "clip_i"),
        ({"drift": -1.0}, "drift"),
        ({"loss": math.inf}, "loss"),
        ({"loss": 0, "clip_i": 0, "clip_t": 0}, "clip_i and clip_t weights are all 0"),
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
    assert ObjectiveWeights(loss=0.0, drift=2.0, clip_t=1.0).loss_only() == ObjectiveWeights(
        loss=1.0, drift=2.0, clip_i=0.0, clip_t=0.0, dino=0.0)


def test_pareto_terms_follow_the_positive_weights():
    assert pareto_names(DEFAULT) == ["loss_ratio", "drift", "clip_i", "clip_t"]
    assert pareto_directions(DEFAULT) == ["minimize", "minimize", "maximize", "maximize"]
    assert pareto_values(_scores(0.1, 0.2, 0.7, 0.3, drift=0.04), DEFAULT) == pytest.approx([0.5, 0.04, 0.7, 0.3])
    clip_i_only = ObjectiveWeights(clip_t=0.0, dino=0.0)
    assert pareto_directions(clip_i_only) == ["minimize", "minimize", "maximize"]
    assert pareto_values(_scores(0.1, 0.2, 0.7, None, drift=0.04), clip_i_only) == pytest.approx([0.5, 0.04, 0.7])
    assert pareto_directions(DEFAULT.loss_only()) == ["minimize", "minimize"]  # --score loss: loss and drift
    no_drift = ObjectiveWeights(drift=0.0).loss_only()
    assert pareto_directions(no_drift) == ["minimize"]
    assert pareto_values(_scores(0.1, 0.2, None, None, drift=None), no_drift) == pytest.approx([0.5])


@pytest.mark.parametrize(
    "val_loss, baseline, drift, clip_i, clip_t, dino, weights, expected",
    [
        # defaults with --dino: 0.5 + 0.02 - 0.5*0.8 - 0.25*0.3 - 0.5*0.6
        (0.1, 0.2, 0.02, 0.8, 0.3, 0.6, WITH_DINO, 0.045 - 0.3),
        # DINO weighed 2x, CLIP off: 0.5 + 0.01 - 2*0.4
        (0.1, 0.2, 0.01, None, None, 0.4, ObjectiveWeights(clip_i=0, clip_t=0, dino=2.0), 0.51 - 0.8),
        # a negative DINO cosine raises the objective
        (0.2, 0.2, 0.0, 0.0, 0.0, -0.5, WITH_DINO, 1.0 + 0.25),
        # no --dino (weight 0): DINO ignored and may be missing
        (0.1, 0.2, 0.02, 0.8, 0.3, None, DEFAULT, 0.045),
        # --score loss: DINO's weight 0 as CLIP's
        (0.15, 0.2, 0.05, None, None, None, WITH_DINO.loss_only(), 0.8),
    ],
)
def test_objective_table_with_dino(val_loss, baseline, drift, clip_i, clip_t, dino, weights, expected):
    scores = TrialScores(val_loss=val_loss, baseline_val_loss=baseline, drift=drift, clip_i=clip_i,
                         clip_t=clip_t, dino=dino)
    terms = objective_terms(scores, weights)
    assert terms.value == pytest.approx(expected, abs=1e-12) == objective_value(scores, weights)
    assert sum(terms.as_dict().values()) == pytest.approx(expected, abs=1e-12)
    if weights.dino:
        assert terms.as_dict()["dino"] == pytest.approx(-weights.dino * dino)
    else:
        assert "dino" not in terms.as_dict()  # not a term of this study: no column of zeros


@pytest.mark.parametrize("dino, words", [(None, "DINO is missing"), (math.nan, "DINO is nan"),
                                         (1.5, "DINO is 1.5, outside [-1, 1]")])
def test_bad_dino_scores_raise_a_score_error(dino, words):
    scores = TrialScores(val_loss=0.1, baseline_val_loss=0.2, drift=0.0, clip_i=0.5, clip_t=0.2, dino=dino)
    with pytest.raises(ScoreError) as caught:
        objective_value(scores, WITH_DINO)
    assert words in str(caught.value)


def test_dino_weight_default_and_pareto_objective():
    assert WITH_DINO.dino == 0.5 == WITH_DINO.clip_i  # see the module docstring for why
    assert DEFAULT.dino == 0 and WITH_DINO.loss_only().dino == 0
    assert pareto_names(WITH_DINO) == ["loss_ratio", "drift", "clip_i", "clip_t", "dino"]
    assert pareto_directions(WITH_DINO)[-1] == "maximize"
    scores = TrialScores(val_loss=0.1, baseline_val_loss=0.2, drift=0.04, clip_i=0.7, clip_t=0.3, dino=0.6)
    assert pareto_values(scores, WITH_DINO) == pytest.approx([0.5, 0.04, 0.7, 0.3, 0.6])  # unweighted
    dino_only = ObjectiveWeights(clip_i=0, clip_t=0, dino=3.0)
    assert pareto_names(dino_only) == ["loss_ratio", "drift", "dino"] and dino_only.uses_samples
    assert not dino_only.uses_clip and not WITH_DINO.loss_only().uses_samples
    # DINO alone is no objective without a loss or CLIP weight: the TOML cannot know --dino is given
    with pytest.raises(ConfigError, match="all 0"):
        build(ObjectiveWeights, "space.toml [objective]", loss=0, clip_i=0, clip_t=0, dino=1.0)
    assert describe_objective(WITH_DINO).endswith("- 0.25 × CLIP-T - 0.5 × DINO (lower is better)")


def test_describe_objective():
    assert describe_objective(DEFAULT) == ("objective = 1 × val_loss / baseline_val_loss + 1 × drift - 0.5 × CLIP-I "
                                           "- 0.25 × CLIP-T (lower is better)")
    assert describe_objective(ObjectiveWeights(loss=0, drift=0, clip_t=0, dino=0)) == (
        "objective = -0.5 × CLIP-I (lower is better)")
    assert describe_objective(ObjectiveWeights(loss=0, clip_t=0, dino=0)) == (
        "objective = 1 × drift - 0.5 × CLIP-I (lower is better)")


def test_scoring_imports_no_torch():
    code = "import sys, lrfind.study.scoring; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
