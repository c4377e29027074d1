"""From a finished study's trials to the recommended full run, and how sure we are. Pure.

The best completed trial gives the parameters; lrfind.study.trial_values turns them into the full
run's values (lr math and the unscaled step count: a trial trained a budget-scaled run).

How sure, in three numbers:
- completed: how many trials finished (pruned and failed ones gave no final value);
- relative_gap: (runner-up's value - best value) / the interquartile range of all completed
  values. Near 0: the runner-up is as good ("a close call"); 1 or more: the best is clearly ahead.
  The IQR, not the full range, so that one diverged trial does not make every gap look small.
- agreement: for each searched parameter, do the top 3 trials agree? Choices: the same value;
  ranges: within a quarter of the searched range (log scale for float ranges).
confidence: "low" below MIN_COMPLETED trials; "high" from CONFIDENT_COMPLETED trials when at least
3/4 of the searched parameters agree; "medium" when at least half agree; else "low".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Optional

from lrfind.artifacts.probe_report import ProbeReport
from lrfind.artifacts.recommendation import Agreement, Closeness, ConceptRepeat, Recommendation
from lrfind.errors import LrfindError
from lrfind.network.kinds import type_label
from lrfind.optimizers import optimizer_entry
from lrfind.study.diagnosis import diagnose_trial
from lrfind.study.epoch_sweep import EPOCH_LOSSES_ATTR, EPOCH_MIN_GAIN, with_swept_epoch
from lrfind.study.dimensions import FloatDimension, NameDimension
from lrfind.study.trial_params import TrialParams
from lrfind.study.space import SearchSpace
from lrfind.study.stats import DatasetStats
from lrfind.study.trial_values import plan_trial

MIN_COMPLETED = 5
CONFIDENT_COMPLETED = 10
TOP_K = 3
AGREEMENT_RANGE_SHARE = 0.25  # top-k values within this share of the searched range agree
CLOSE_CALL = 0.25  # relative gap below this: the runner-up is about as good
CLEARLY_AHEAD = 1.0
PARAM_NAMES = ("network_dim", "network_alpha_fraction", "epochs", "repeats", "lr_multiplier",
               "optimizer", "lr_scheduler", "network_type", "conv_dim_fraction", "lokr_factor")


class NoCompletedTrials(LrfindError):
    """The study has nothing to recommend from."""


@dataclass(frozen=True)
class TrialRecord:
    """What recommend() needs of a trial (optuna's FrozenTrial has more; see from_frozen_trial)."""

    number: int
    state: str  # "COMPLETE" | "PRUNED" | "FAIL" (anything else counts as unfinished)
    value: Optional[float]
    params: dict
    user_attrs: dict = field(default_factory=dict)

    @classmethod
    def from_frozen_trial(cls, trial) -> "TrialRecord":
        values = trial.values or []  # FrozenTrial.value raises for multi-objective studies
        value = float(values[0]) if len(values) == 1 else None
        return cls(trial.number, trial.state.name, value, with_swept_epoch(trial.params, trial.user_attrs),
                   dict(trial.user_attrs))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _ranked(trials: list[TrialRecord], direction: str) -> list[TrialRecord]:
    done = [t for t in trials if t.state == "COMPLETE" and _finite(t.value)]
    return sorted(done, key=lambda t: (t.value if direction == "minimize" else -t.value, t.number))


def _closeness(ranked: list[TrialRecord], trials: list[TrialRecord]) -> Closeness:
    values = [t.value for t in ranked]
    spread = None
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        spread = (q3 - q1) or (max(values) - min(values)) or None
    runner_up = ranked[1] if len(ranked) > 1 else None
    gap = abs(runner_up.value - ranked[0].value) if runner_up else None
    return Closeness(
        completed=len(ranked),
        pruned=sum(t.state == "PRUNED" for t in trials),
        failed=sum(t.state == "FAIL" for t in trials),
        runner_up=runner_up.number if runner_up else None,
        runner_up_gap=gap,
        spread=spread,
        relative_gap=gap / spread if gap is not None and spread else None,
        top=tuple((t.number, t.value) for t in ranked[:TOP_K]),
    )


def _values_agree(values: list, dimension) -> bool:
    if isinstance(dimension, NameDimension) or dimension.choices is not None:
        return len(set(values)) == 1
    low, high = dimension.range
    if high == low:
        return True
    if isinstance(dimension, FloatDimension):  # float ranges are searched on a log scale
        return math.log(max(values) / min(values)) <= AGREEMENT_RANGE_SHARE * math.log(high / low)
    return max(values) - min(values) <= AGREEMENT_RANGE_SHARE * (high - low)


def _agreement(ranked: list[TrialRecord], space: SearchSpace) -> dict[str, Agreement]:
    top = ranked[:TOP_K]
    if len(top) < 2:
        return {}
    result = {}
    for name in PARAM_NAMES:
        dimension = getattr(space, name)
        if not _searched(space, name) or any(name not in t.params for t in top):
            continue  # a fixed setting trivially agrees: listing it would only pad the summary
        values = [t.params[name] for t in top]
        result[name] = Agreement(values=tuple(values), agree=_values_agree(values, dimension))
    return result


def _searched(space: SearchSpace, name: str) -> bool:
    dimension = getattr(space, name)
    if dimension is None:
        return False
    if dimension.choices is not None:
        return len(dimension.choices) > 1
    return dimension.range[0] != dimension.range[1]


def _confidence(closeness: Closeness, agreement) -> str:
    if closeness.completed < MIN_COMPLETED:
        return "low"
    share = sum(a.agree for a in agreement.values()) / len(agreement) if agreement else 1.0
    if closeness.completed >= CONFIDENT_COMPLETED and share >= 0.75:
        return "high"
    return "medium" if share >= 0.5 else "low"


def recommend(trials: list[TrialRecord], space: SearchSpace, probe: ProbeReport, stats: DatasetStats,
              direction: str = "minimize", final_stats: Optional[DatasetStats] = None) -> Recommendation:
    """The recommended full run: the best completed trial's parameters at full length.

    `stats` are the images the trials trained on; `final_stats` every image of the dataset (the
    study's held-out ones too), which the full run trains on (None: the same as `stats`).
    """
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be minimize or maximize, got {direction!r}")
    ranked = _ranked(trials, direction)
    if not ranked:
        states = {s: sum(t.state == s for t in trials) for s in ("PRUNED", "FAIL")}
        raise NoCompletedTrials(
            f"no completed trial to recommend from ({len(trials)} trials: {states['PRUNED']} pruned, "
            f"{states['FAIL']} failed); run more trials (--n-trials) or raise --trial-budget, and "
            "check failed trials' reasons in the study's trials/<number>/metrics.json"
        )
    best = ranked[0]
    params = TrialParams.from_params(best.params, space)
    plan = plan_trial(params, probe, space, stats)
    final = plan_trial(params, probe, space, final_stats) if final_stats is not None else plan
    values = final.full_run_values
    closeness = _closeness(ranked, trials)
    agreement = _agreement(ranked, space)
    rec = Recommendation(
        trial_number=best.number, value=best.value, direction=direction, params=dict(best.params),
        network_dim=params.network_dim, network_alpha=params.network_alpha, epochs=params.epochs,
        repeats=params.repeats, optimizer=params.optimizer,
        concept_repeats=[ConceptRepeat(folder=f, concept=c, repeats=r, folder_name=f"{r}_{c}")
                         for f, c, r in final.concept_repeats],
        optimizer_args=dict(values["optimizer_args"]), unet_lr=values["unet_lr"],
        text_encoder_lr=values["text_encoder_lr"], lr_scheduler=params.lr_scheduler,
        total_steps=final.full_run.total_steps, steps_math=final.full_run.text + _all_images_note(stats, final_stats),
        trial_steps=plan.trial_steps, budget_scale=plan.budget_scale, train_values=dict(values),
        closeness=closeness, agreement=agreement,
        confidence=_confidence(closeness, agreement),
        metrics={k: v for k, v in best.user_attrs.items() if _finite(v)},
        epoch_losses=dict(best.user_attrs.get(EPOCH_LOSSES_ATTR) or {}),
        network_type=params.network_type, network_module=values["network_module"],
        network_args=dict(values["network_args"]),
    )
    return rec.model_copy(update={"summary": summary_text(rec, diagnosis_sentence(best))})


def diagnosis_sentence(trial: TrialRecord) -> str:
    """The diagnosis (lrfind.study.diagnosis) of a swept trial's curve, against the base model's loss."""
    found = diagnose_trial(trial.user_attrs)
    if found is None:
        return ""
    return f"Diagnosis of trial {trial.number} (held-out loss per epoch against the base model's): {found.text}"


def _all_images_note(stats: DatasetStats, final_stats: Optional[DatasetStats]) -> str:
    held = final_stats.images - stats.images if final_stats is not None else 0
    if held <= 0:
        return ""
    return (f" (all {final_stats.images} images train, the {held} the study held out for validation too; "
            f"its trials trained on {stats.images})")


# --- the human paragraph -------------------------------------------------------------------------


def summary_text(r: Recommendation, diagnosis: str = "") -> str:
    """The paragraph recommendation.json keeps as `summary` (and the study prints)."""
    return " ".join(part for part in (_settings_sentence(r), _epochs_sentence(r), diagnosis, _steps_sentence(r),
                                      _sureness_sentence(r)) if part)


def _settings_sentence(r: Recommendation) -> str:
    optimizer = optimizer_entry(r.optimizer)
    te = "text encoder not trained" if r.text_encoder_lr is None else f"text_encoder_lr {r.text_encoder_lr:.3g}"
    if optimizer.adaptive and r.text_encoder_lr is not None:
        te += f" ({optimizer.name} shares one step size across both)"
    renames = [f"{c.folder!r} → '{c.folder_name}'" for c in r.concept_repeats if c.folder != c.folder_name]
    repeats = f"; rename {', '.join(renames)} for these repeats" if renames else ""
    args = " ".join(f"{k}={v}" for k, v in r.network_args.items())
    network = f"{type_label(r.network_type)} ({r.network_module}{' ' + args if args else ''}), "
    return (f"Recommended (from trial {r.trial_number}, value {r.value:.4g}): {network}network_dim {r.network_dim}, "
            f"network_alpha {r.network_alpha:g}, {r.epochs} epochs, {optimizer.summary(r.unet_lr, r.optimizer_args)}, {te}, "
            f"lr_scheduler {r.lr_scheduler}{repeats}.")


def _epochs_sentence(r: Recommendation) -> str:
    if len(r.epoch_losses) < 2:
        return ""
    losses = ", ".join(f"{e}: {v:.4g}" for e, v in r.epoch_losses.items())
    rule = (f"; a count that drifts further from the base model had to lower it by more than {EPOCH_MIN_GAIN:.1%}"
            if "drift" in r.metrics else "")
    return (f"Epochs: {r.epochs} is the best epoch count on trial {r.trial_number}'s curve (validation loss "
            f"after each count, {losses}{rule}).")


def _steps_sentence(r: Recommendation) -> str:
    scaled = ""
    if r.budget_scale < 1:
        scaled = f" (the trial itself trained {r.trial_steps} steps, x{r.budget_scale:.2g} to fit the trial budget)"
    return f"Total steps: {r.steps_math}{scaled}."


def _sureness_sentence(r: Recommendation) -> str:
    c = r.closeness
    counts = f"{c.completed} completed trials ({c.pruned} pruned, {c.failed} failed)"
    if c.runner_up is None:
        return f"How sure: {r.confidence} — only one of {counts}; run more trials to compare."
    if c.relative_gap is None:
        gap = f"the runner-up (trial {c.runner_up}) scored the same"
    else:
        verdict = ("a close call" if c.relative_gap < CLOSE_CALL else
                   "clearly ahead" if c.relative_gap >= CLEARLY_AHEAD else "somewhat ahead")
        gap = (f"the runner-up (trial {c.runner_up}) is {c.runner_up_gap:.3g} behind, {c.relative_gap:.2f}x "
               f"the spread of completed values (IQR {c.spread:.3g}): {verdict}")
    agree = [name for name, a in r.agreement.items() if a.agree]
    differ = [name for name, a in r.agreement.items() if not a.agree]
    top = f"the top {len(c.top)} agree on {', '.join(agree) or 'no parameter'}"
    if differ:
        top += f" but not on {', '.join(differ)}"
        if c.relative_gap is not None and c.relative_gap < CLOSE_CALL:
            top += " (which then matter little at this budget)"
    return f"How sure: {r.confidence} — {counts}; {gap}; {top}."
