"""The study's scalar objective, from held-out loss, drift and CLIP similarities. Pure: no torch.

    objective = w_loss × val_loss / baseline_val_loss + w_drift × drift - w_clip_i × CLIP-I - w_clip_t × CLIP-T
                [- w_dino × DINO, only with --dino]

minimised. `val_loss` is the deterministic validation loss on the study's held-out images and
`baseline_val_loss` the base model's (no LoRA) on the same images, measured once per study:
dividing by it makes the loss term about 1 for "learnt nothing", below 1 for "denoises images it
never trained on better", and independent of the dataset's loss scale, so the weights mean the
same in every study. `drift` (lrfind.scoring.drift) is the mean squared change of the UNet's noise
predictions on prompts without the trigger word: what the LoRA breaks where it should change
nothing; it is 0 for the base model and grows with training. CLIP-I (mean cosine of trigger-word
samples vs the held-out images: the concept, not the training photos) and CLIP-T (mean cosine of
each novel-scene sample vs its prompt) lie in [-1, 1]; higher is better, hence the minus signs.
DINO (lrfind.scoring.dino, only when `lrfind study --dino DIR` gives a local DINO model) is CLIP-I
with DINO's CLS embeddings instead of CLIP's: the same samples, the same held-out images, a cosine
in [-1, 1]. DINO is not trained to match images with text, so it separates subjects of one class
that CLIP-I scores alike (DreamBooth's reason for it). DEFAULT_DINO_WEIGHT = 0.5, the default CLIP-I
weight: the two are likeness scores on the same cosine scale and DINO is an optional, second view of
the same likeness, so by default it counts as much as CLIP-I, not more. Without --dino the term is
absent (weight 0, whatever the TOML says): a study cannot score what it has no model for.

The weights come from the `[objective]` table of the space TOML. DEFAULT_DRIFT_WEIGHT = 1: drift
is on the noise's scale, and on the tiny pretrained model (benchmarks/RESULTS.md, overfitting
curve) a run at a fitting lr drifts 0.005-0.02, so it costs 0.5-2 % of the loss term, about what
those runs gain in held-out loss (0.3-2.9 %): a LoRA must buy its drift with held-out loss. A
burnt run's 0.03-0.05 costs 3-5 %. With `--score loss` the CLIP weights are 0
(`ObjectiveWeights.loss_only`), and so is DINO's (no samples are drawn); drift needs no CLIP model
and keeps its weight.

Pruning sees `intermediate_value` = val_loss / baseline at each report step: the loss term alone,
unweighted, because CLIP scores exist only at the end of a trial and pruners compare trials with
each other at the same step (a scale factor changes no ranking; a loss weight of 0 would make
every intermediate value 0 and disable pruning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pydantic import Field, model_validator

from lrfind.config import StrictModel
from lrfind.jsonfiles import finite

# (name, direction) of each objective of a multi-objective (--pareto) study, in this order.
# dino last: studies without --dino keep the order they always had
PARETO_OBJECTIVES = (("loss_ratio", "minimize"), ("drift", "minimize"), ("clip_i", "maximize"),
                     ("clip_t", "maximize"), ("dino", "maximize"))
DEFAULT_DRIFT_WEIGHT = 1.0  # see the module docstring for why
DEFAULT_DINO_WEIGHT = 0.5  # likewise


class ScoreError(ValueError):
    """A metric that cannot be scored (NaN, inf, out of range): the trial fails with this reason."""


class ObjectiveWeights(StrictModel):
    """Weights of the objective's terms; the `[objective]` table of a space TOML."""

    loss: float = Field(1.0, ge=0, allow_inf_nan=False)
    drift: float = Field(DEFAULT_DRIFT_WEIGHT, ge=0, allow_inf_nan=False)
    clip_i: float = Field(0.5, ge=0, allow_inf_nan=False)
    clip_t: float = Field(0.25, ge=0, allow_inf_nan=False)
    dino: float = Field(DEFAULT_DINO_WEIGHT, ge=0, allow_inf_nan=False)  # has effect only with --dino

    @model_validator(mode="after")
    def _some_weight(self) -> "ObjectiveWeights":
        if self.loss == 0 and self.clip_i == 0 and self.clip_t == 0:
            raise ValueError("loss, clip_i and clip_t weights are all 0; give one a positive weight "
                             "(drift alone would rank the untrained LoRA first)")
        return self

    @property
    def uses_clip(self) -> bool:
        """Whether samples must be CLIP-scored at the end of each trial."""
        return self.clip_i > 0 or self.clip_t > 0

    @property
    def uses_samples(self) -> bool:
        """Whether each trial draws samples at its end (for CLIP or DINO)."""
        return self.uses_clip or self.dino > 0

    def loss_only(self) -> "ObjectiveWeights":
        """The weights of `--score loss`: CLIP and DINO terms 0, loss (1 if it was 0) and drift kept."""
        return ObjectiveWeights(loss=self.loss or 1.0, drift=self.drift, clip_i=0.0, clip_t=0.0, dino=0.0)

    def without_dino(self) -> "ObjectiveWeights":
        """The weights of a study without --dino: the DINO term has no model to score it."""
        return self.model_copy(update={"dino": 0.0})


@dataclass(frozen=True)
class TrialScores:
    """What a trial measured, unweighted: the inputs of the objective."""

    val_loss: float  # on the held-out images
    baseline_val_loss: float  # the base model's, same images
    drift: Optional[float] = None  # None only where its weight is 0
    clip_i: Optional[float] = None  # None only where its weight is 0
    clip_t: Optional[float] = None
    dino: Optional[float] = None  # None only where its weight is 0 (no --dino)


@dataclass(frozen=True)
class ObjectiveTerms:
    """Each weighted, signed term of the objective; `value` is their sum (lower is better)."""

    loss: float
    drift: float
    clip_i: float
    clip_t: float
    dino: Optional[float] = None  # None: not part of this study's objective (no --dino)

    @property
    def value(self) -> float:
        return self.loss + self.drift + self.clip_i + self.clip_t + (self.dino or 0.0)

    def as_dict(self) -> dict[str, float]:
        terms = {"loss": self.loss, "drift": self.drift, "clip_i": self.clip_i, "clip_t": self.clip_t}
        return terms if self.dino is None else {**terms, "dino": self.dino}


def _required_finite(name: str, value: float) -> float:
    """float(value), or ScoreError when it is not a finite number (lrfind.jsonfiles.finite decides)."""
    value = float(value)
    if finite(value) is None:
        raise ScoreError(f"{name} is {value}: the trial diverged or its samples are broken")
    return value


def loss_ratio(val_loss: float, baseline_val_loss: float) -> float:
    """val_loss / baseline_val_loss; ScoreError if either is not finite or the baseline is not > 0."""
    baseline = _required_finite("the baseline validation loss", baseline_val_loss)
    if baseline <= 0:
        raise ScoreError(f"the baseline validation loss is {baseline}; it must be > 0 to scale losses by")
    return _required_finite("the validation loss", val_loss) / baseline


def intermediate_value(val_loss: float, baseline_val_loss: float) -> float:
    """What a trial reports to the pruner at a step: val_loss / baseline (lower is better)."""
    return loss_ratio(val_loss, baseline_val_loss)


def _clip_term(name: str, value: Optional[float], weight: float) -> float:
    if weight == 0:
        return 0.0  # not scored (e.g. --score loss): the value may be None
    if value is None:
        raise ScoreError(f"{name} is missing but its objective weight is {weight}")
    value = _required_finite(name, value)
    if not -1.0 - 1e-6 <= value <= 1.0 + 1e-6:
        raise ScoreError(f"{name} is {value}, outside [-1, 1]: it is not a cosine similarity")
    return weight * value


def _drift_term(value: Optional[float], weight: float) -> float:
    if weight == 0:
        return 0.0
    if value is None:
        raise ScoreError(f"the drift is missing but its objective weight is {weight}")
    value = _required_finite("the drift", value)
    if value < 0:
        raise ScoreError(f"the drift is {value}; a mean of squares cannot be negative")
    return weight * value


def objective_terms(scores: TrialScores, weights: ObjectiveWeights) -> ObjectiveTerms:
    """The weighted terms (see the module docstring for the formula).

    Raises ScoreError for NaN/inf inputs, a baseline <= 0, a negative drift, a CLIP or DINO score
    outside [-1, 1], or a missing score whose weight is not 0.
    """
    return ObjectiveTerms(
        loss=weights.loss * loss_ratio(scores.val_loss, scores.baseline_val_loss) if weights.loss else 0.0,
        drift=_drift_term(scores.drift, weights.drift),
        clip_i=-_clip_term("CLIP-I", scores.clip_i, weights.clip_i),
        clip_t=-_clip_term("CLIP-T", scores.clip_t, weights.clip_t),
        dino=-_clip_term("DINO", scores.dino, weights.dino) if weights.dino else None)


def objective_value(scores: TrialScores, weights: ObjectiveWeights) -> float:
    """The value a trial is ranked by (minimised): the sum of `objective_terms`."""
    return objective_terms(scores, weights).value


def _pareto_names(weights: ObjectiveWeights) -> list[str]:
    weight_of = {"loss_ratio": weights.loss, "drift": weights.drift, "clip_i": weights.clip_i,
                 "clip_t": weights.clip_t, "dino": weights.dino}
    return [name for name, _ in PARETO_OBJECTIVES if weight_of[name] > 0]


def pareto_directions(weights: ObjectiveWeights) -> list[str]:
    """Optuna directions of a --pareto study: one per objective term with a positive weight."""
    direction_of = dict(PARETO_OBJECTIVES)
    return [direction_of[name] for name in _pareto_names(weights)]


def pareto_names(weights: ObjectiveWeights) -> list[str]:
    """The names of a --pareto study's objectives, in the order of `pareto_directions(weights)`."""
    return _pareto_names(weights)


def pareto_values(scores: TrialScores, weights: ObjectiveWeights) -> list[float]:
    """The unweighted terms of a --pareto study, in the order of `pareto_directions(weights)`."""
    value_of = {
        "loss_ratio": lambda: loss_ratio(scores.val_loss, scores.baseline_val_loss),
        "drift": lambda: _drift_term(scores.drift, 1.0),
        "clip_i": lambda: _clip_term("CLIP-I", scores.clip_i, 1.0),
        "clip_t": lambda: _clip_term("CLIP-T", scores.clip_t, 1.0),
        "dino": lambda: _clip_term("DINO", scores.dino, 1.0),
    }
    return [value_of[name]() for name in _pareto_names(weights)]


def describe_objective(weights: ObjectiveWeights) -> str:
    """The formula with these weights, for the printed summary and the report."""
    terms = [(sign, weight, text) for sign, weight, text in (
        ("+", weights.loss, "val_loss / baseline_val_loss"), ("+", weights.drift, "drift"),
        ("-", weights.clip_i, "CLIP-I"), ("-", weights.clip_t, "CLIP-T"), ("-", weights.dino, "DINO"))
        if weight]
    sign, weight, text = terms[0]
    formula = f"{'-' if sign == '-' else ''}{weight:g} × {text}"
    for sign, weight, text in terms[1:]:
        formula += f" {sign} {weight:g} × {text}"
    return f"objective = {formula} (lower is better)"
