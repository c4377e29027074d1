"""One Optuna trial: plan it from the space, train through the shared loop, score, save artifacts."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from lrfind.artifacts.probe_report import ProbeReport
from lrfind.artifacts.trial_metrics import TrialMetrics
from lrfind.atomic import write_text
from lrfind.config import SEED_MAX
from lrfind.errors import LrfindError, TrainingStopped, is_out_of_memory
from lrfind.scoring.dino import dino_similarity
from lrfind.scoring.samples import render_samples, save_samples, score_samples
from lrfind.study.diagnosis import diagnose_trial
from lrfind.study.free_heap import free_memory
from lrfind.study.scoring import TrialScores, loss_ratio, objective_terms, pareto_values
from lrfind.study.trial_params import suggest
from lrfind.study.storage import WORKER_ATTR, worker_identity
from lrfind.study.trial_training import TrialJob, train_trials, trial_job
from lrfind.study.trial_values import plan_trial


SAMPLE_STEPS = 20  # DDIM steps per validation sample: enough to judge, cheap next to training
SAMPLE_GUIDANCE = 7.5


class TrialFailed(Exception):
    """The trial could not produce a value (NaN loss, out of memory); the study goes on."""


class QuietTrialLog(logging.Filter):
    """Optuna's log of a failed trial without the traceback it attaches.

    A TrialFailed carries its reason in the message already (and in fail_reason); Ctrl-C is
    reported by the CLI in one line, so Optuna's records of it are dropped altogether.
    """

    LOGGER = "optuna.study._optimize"

    def __init__(self):
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, KeyboardInterrupt):
            self.interrupted = True
            return False
        if self.interrupted and "failed with value" in record.getMessage():
            return False  # the second line Optuna writes about the interrupted trial
        if isinstance(error, (TrialFailed, LrfindError)):  # LrfindError: a full disk, explained by the CLI
            record.exc_info, record.exc_text = None, None
        return True


@dataclass
class StudyContext:
    """What every trial of this process shares: loaded once."""

    cfg: Any  # StudyConfig
    space: Any  # SearchSpace
    probe: ProbeReport  # without its curves
    components: Any
    dataset: Any
    stats: Any  # DatasetStats
    store: Any
    baseline_val_loss: float
    weights: Any  # ObjectiveWeights
    scorer: Any = None  # ClipScorer or None (loss-only scoring, or DINO only)
    prompts: Optional[list] = None  # [(prompt, seed)] of the samples each trial draws; None: it draws none
    # CLIP-I's reference: embeddings of the held-out images (of the training images when the study
    # holds none out), and which of the two (lrfind.scoring.samples.ClipReference.source)
    clip_i_images: Any = None
    clip_i_reference: Optional[str] = None
    dino_scorer: Any = None  # lrfind.scoring.dino.DinoScorer with --dino, else None
    dino_images: Any = None  # its embeddings of CLIP-I's reference images, made once
    prompt_embeddings: Any = None  # CLIP text embeddings of the prompts (CLIP-T), made once
    # lora_run's validation_memo: one ValidationSet (noised latents, caption embeddings) for the study
    validation_sets: dict = field(default_factory=dict)
    progress: Any = None  # callable(text, transient) for live status lines (lrfind.study.progress), or None
    # the study's held-out images (lrfind.study.held_out): `dataset` is the rest; () = validate on it
    held_out: tuple = ()
    warnings: tuple = ()  # what the split could not do
    final_stats: Any = None  # DatasetStats of every image: the final run trains on all of them
    drift_probe: Any = None  # lrfind.scoring.drift.DriftProbe with the base predictions, or None


@dataclass
class PlannedTrial:
    """A trial asked and planned: what it trains, or the completed twin whose result it takes."""

    trial: Any
    plan: Any  # lrfind.study.trial_values.TrialPlan
    trial_dir: Path
    started: float
    twin_value: Any = None  # the twin's objective value(s), when it is one; then nothing trains


class TrialObjective:
    def __init__(self, ctx: StudyContext):
        self.ctx = ctx

    def __call__(self, trial) -> float | tuple[float, ...]:
        planned = self.planned(trial)
        if planned.twin_value is not None:
            return planned.twin_value
        return self.completed(planned, lambda: self._train(planned))

    def planned(self, trial) -> PlannedTrial:
        """The trial's plan from the space (its parameters suggested now); a twin's result copied."""
        ctx = self.ctx
        trial.set_user_attr(WORKER_ATTR, worker_identity())
        mode = ctx.cfg.epoch_mode
        plan = plan_trial(suggest(trial, ctx.space, mode), ctx.probe, ctx.space, ctx.stats, mode)
        trial_dir = ctx.cfg.out_dir() / "trials" / str(trial.number)
        started = time.time()
        twin = _completed_twin(trial, ctx.cfg)
        if twin is not None:
            return PlannedTrial(trial, plan, trial_dir, started, self._copy_twin(trial, twin, trial_dir, started))
        trial.set_user_attr("train_values", plan.train_values)
        trial.set_user_attr("steps_planned", plan.trial_steps)
        return PlannedTrial(trial, plan, trial_dir, started)

    def job(self, planned: PlannedTrial) -> TrialJob:
        return trial_job(self.ctx, planned.trial, planned.plan, planned.trial_dir,
                         trial_seed(self.ctx.cfg, planned.trial.number))

    def completed(self, planned: PlannedTrial, train: Callable[[], tuple[dict, dict]]):
        """Train (`train` gives the LoRA kept and the metrics), score and record; the objective value(s).

        A stopped or out-of-memory run fails the trial (TrialFailed); optuna.TrialPruned and bugs
        propagate, for Optuna to record.
        """
        trial = planned.trial
        try:
            lora_state, metrics = train()
        except TrainingStopped as stop:
            self._fail(trial, stop.reason)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is a trial failure; the rest is a bug
            if not is_out_of_memory(err):
                raise
            self._fail(trial, f"out of memory ({type(err).__name__}); lower dim, resolution or batch size")
        if self.ctx.prompts is not None:
            metrics.update(self._score(lora_state, planned.trial_dir))
        return self._finish(trial, planned.trial_dir, metrics, planned.started)

    def _train(self, planned: PlannedTrial) -> tuple[dict, dict]:
        """Train the plan alone; returns (the LoRA to keep, metrics so far)."""
        job = self.job(planned)
        train_trials(self.ctx, [job])
        return job_outcome(job)

    def _copy_twin(self, trial, twin, trial_dir: Path, started: float):
        """A completed trial with the same parameters and training seed: its result, untrained.

        Training is deterministic given parameters and seed (trial_seed "same"), so rerunning a
        point only spends compute; samplers on a small categorical space propose repeats often.
        """
        kept = {k: v for k, v in twin.user_attrs.items() if k not in (WORKER_ATTR, "seconds", "steps_done")}
        metrics = TrialMetrics.from_user_attributes(trial.number, trial.params, {
            **kept, "duplicate_of": twin.number, "steps_done": 0, "seconds": round(time.time() - started, 2)})
        _record(trial, trial_dir, metrics)
        return tuple(twin.values) if self.ctx.cfg.pareto else twin.values[0]

    def _score(self, lora_state: dict, trial_dir: Path) -> dict:
        """The trial's samples (the study's prompts and seeds), CLIP- and DINO-scored: one set of images."""
        ctx = self.ctx
        sampling = {"size": ctx.space.fixed.resolution, "steps": SAMPLE_STEPS, "guidance": SAMPLE_GUIDANCE}
        metrics: dict = {"clip_i_reference": ctx.clip_i_reference}  # the reference of CLIP-I and DINO alike
        if ctx.scorer is not None:
            scores = score_samples(ctx.components, lora_state, ctx.prompts, ctx.clip_i_images, ctx.scorer,
                                   prompt_embeddings=ctx.prompt_embeddings, **sampling)
            images = scores.images
            metrics.update(clip_i=scores.clip_i, clip_t=scores.clip_t, clip_calibrated=scores.calibrated)
        else:  # DINO only: the space's CLIP weights are 0
            images = render_samples(ctx.components, lora_state, ctx.prompts, **sampling)
        if ctx.dino_scorer is not None:
            metrics["dino"] = dino_similarity(ctx.dino_scorer.image_embeddings(images), ctx.dino_images)
        prompts, seeds = [prompt for prompt, _ in ctx.prompts], [int(seed) for _, seed in ctx.prompts]
        paths = save_samples(images, trial_dir / "samples", prompts, seeds)
        out = ctx.cfg.out_dir()
        return {**metrics, "samples": [str(Path(p).relative_to(out)) for p in paths], "sample_prompts": prompts,
                "sample_seeds": seeds}

    def _finish(self, trial, trial_dir: Path, metrics: dict, started: float):
        """Record the metrics on the trial and in metrics.json; return the objective value(s)."""
        ctx = self.ctx
        ratio = loss_ratio(metrics["val_loss"], ctx.baseline_val_loss)
        found = diagnose_trial({**metrics, "val_loss_ratio": ratio})
        scores = TrialScores(val_loss=metrics["val_loss"], baseline_val_loss=ctx.baseline_val_loss,
                             drift=metrics.get("drift"), clip_i=metrics["clip_i"], clip_t=metrics["clip_t"],
                             dino=metrics.get("dino"))
        terms = objective_terms(scores, ctx.weights)  # a ScoreError (NaN, missing term) fails the trial
        metrics = TrialMetrics(number=trial.number, params=trial.params, **metrics, val_loss_ratio=ratio,
                               objective_terms=terms.as_dict(),
                               diagnosis=found.text if found is not None else None,
                               seconds=round(time.time() - started, 2))
        _record(trial, trial_dir, metrics)
        if ctx.cfg.pareto:
            return tuple(pareto_values(scores, ctx.weights))
        return terms.value

    def _fail(self, trial, reason: str):
        trial.set_user_attr("fail_reason", reason)
        free_memory()
        raise TrialFailed(reason)


def job_outcome(job: TrialJob) -> tuple[dict, dict]:
    """A trained job's (LoRA kept, metrics); its error raised when it has one."""
    if job.error is not None:
        raise job.error
    return job.result.lora_state, job.result.metrics


def _record(trial, trial_dir: Path, metrics: TrialMetrics) -> None:
    """The metrics in the trial's user attributes and in its metrics.json."""
    for key, value in metrics.user_attributes().items():
        trial.set_user_attr(key, value)
    write_text(trial_dir / "metrics.json", metrics.to_json())


def _completed_twin(trial, cfg):
    """A COMPLETE trial of this study with the same params, when trials share one training seed."""
    from optuna.trial import TrialState

    study = getattr(trial, "study", None)  # optuna.trial.FixedTrial has none
    if cfg.trial_seed != "same" or study is None:
        return None
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.number != trial.number and other.params == trial.params:
            return other
    return None


def trial_seed(cfg, number: int) -> int:
    """The training seed of trial `number` (StudyConfig.trial_seed says which rule)."""
    return cfg.seed if cfg.trial_seed == "same" else (cfg.seed + number) % (SEED_MAX + 1)  # stays a valid seed
