"""The study's scalar objective, from validation loss and CLIP similarities. Pure: no torch.

    objective = w_loss * val_loss / baseline_val_loss - w_clip_i * CLIP-I - w_clip_t * CLIP-T

minimised. `baseline_val_loss` is the base model's (no LoRA) deterministic validation loss,
measured once per study: dividing by it makes the loss term about 1 for "learnt nothing", below 1
for "fits the held-out denoising task better", and independent of the dataset's loss scale, so
the weights mean the same in every study. CLIP-I (mean cosine of samples vs training images) and
CLIP-T (mean cosine of each sample vs its prompt) lie in [-1, 1]; higher is better, hence the
minus signs. The weights come from the `[objective]` table of the space TOML; with `--score loss`
the CLIP weights are 0 (`ObjectiveWeights.loss_only`).

Pruning sees `intermediate_value` = val_loss / baseline at each report step: the loss term alone,
unweighted, because CLIP scores exist only at the end of a trial and pruners compare trials with
each other at the same step (a scale factor changes no ranking; a loss weight of 0 would make
every intermediate value 0 and disable pruning).
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from lrfind.config import StrictModel
from lrfind.jsonfiles import finite

# (name, direction) of each objective of a multi-objective (--pareto) study, in this order.
PARETO_OBJECTIVES = (("loss_ratio", "minimize"), ("clip_i", "maximize"), ("clip_t", "maximize"))


class ScoreError(ValueError):
    """A metric that cannot be scored (NaN, inf, out of range): the trial fails with this reason."""


class ObjectiveWeights(StrictModel):
    """Weights of the objective's terms; the `[objective]` table of a space TOML."""

    loss: float = Field(1.0, ge=0, allow_inf_nan=False)
    clip_i: float = Field(0.5, ge=0, allow_inf_nan=False)
    clip_t: float = Field(0.25, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _some_weight(self) -> "ObjectiveWeights":
        if self.loss == 0 and self.clip_i == 0 and self.clip_t == 0:
            raise ValueError("all objective weights are 0; give loss, clip_i or clip_t a positive weight")
        return self

    @property
    def uses_clip(self) -> bool:
        """Whether samples must be CLIP-scored at the end of each trial."""
        return self.clip_i > 0 or self.clip_t > 0

    def loss_only(self) -> "ObjectiveWeights":
        """The weights of `--score loss`: CLIP terms 0, the loss weight kept (1 if it was 0)."""
        return ObjectiveWeights(loss=self.loss or 1.0, clip_i=0.0, clip_t=0.0)


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


def objective_value(
    val_loss: float,
    baseline_val_loss: float,
    clip_i: Optional[float],
    clip_t: Optional[float],
    weights: ObjectiveWeights,
) -> float:
    """The value a trial is ranked by (minimised); see the module docstring for the formula.

    A CLIP score may be None when its weight is 0. Raises ScoreError for NaN/inf inputs, a
    baseline <= 0 or a CLIP score outside [-1, 1].
    """
    loss_term = weights.loss * loss_ratio(val_loss, baseline_val_loss) if weights.loss else 0.0
    return (loss_term
            - _clip_term("CLIP-I", clip_i, weights.clip_i)
            - _clip_term("CLIP-T", clip_t, weights.clip_t))


def _pareto_names(weights: ObjectiveWeights) -> list[str]:
    weight_of = {"loss_ratio": weights.loss, "clip_i": weights.clip_i, "clip_t": weights.clip_t}
    return [name for name, _ in PARETO_OBJECTIVES if weight_of[name] > 0]


def pareto_directions(weights: ObjectiveWeights) -> list[str]:
    """Optuna directions of a --pareto study: one per objective term with a positive weight."""
    direction_of = dict(PARETO_OBJECTIVES)
    return [direction_of[name] for name in _pareto_names(weights)]


def pareto_values(
    val_loss: float,
    baseline_val_loss: float,
    clip_i: Optional[float],
    clip_t: Optional[float],
    weights: ObjectiveWeights,
) -> list[float]:
    """The unweighted terms of a --pareto study, in the order of `pareto_directions(weights)`."""
    values = []
    for name in _pareto_names(weights):
        if name == "loss_ratio":
            values.append(loss_ratio(val_loss, baseline_val_loss))
        elif name == "clip_i":
            values.append(_clip_term("CLIP-I", clip_i, 1.0))
        else:
            values.append(_clip_term("CLIP-T", clip_t, 1.0))
    return values


def describe_objective(weights: ObjectiveWeights) -> str:
    """The formula with these weights, for the printed summary and the report."""
    terms = []
    if weights.loss:
        terms.append(f"{weights.loss:g} × val_loss / baseline_val_loss")
    if weights.clip_i:
        terms.append(f"{weights.clip_i:g} × CLIP-I")
    if weights.clip_t:
        terms.append(f"{weights.clip_t:g} × CLIP-T")
    text = terms[0] if weights.loss else f"-{terms[0]}"
    for term in terms[1:]:
        text += f" - {term}"
    return f"objective = {text} (lower is better)"
