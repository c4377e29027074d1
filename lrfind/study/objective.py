"""One Optuna trial: plan it from the space, train through the shared loop, score, save artifacts."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lrfind.artifacts.probe_report import ProbeReport
from lrfind.artifacts.trial_metrics import TrialMetrics
from lrfind.atomic import write_text
from lrfind.config import SEED_MAX
from lrfind.data.types import with_repeats
from lrfind.errors import LrfindError, TrainingStopped
from lrfind.network import save_lora
from lrfind.scoring.dino import dino_similarity
from lrfind.scoring.samples import render_samples, save_samples, score_samples
from lrfind.study.diagnosis import diagnose_trial
from lrfind.study.epoch_sweep import EPOCH_LOSSES_ATTR, SWEPT_EPOCH_ATTR, best_epoch, epoch_losses
from lrfind.study.progress import TrialProgress
from lrfind.study.pruning import OptunaReporter, used_validation_steps
from lrfind.study.scoring import TrialScores, loss_ratio, objective_terms, pareto_values
from lrfind.study.trial_params import suggest
from lrfind.study.storage import WORKER_ATTR, worker_identity
from lrfind.study.trial_config import trial_train_config
from lrfind.study.trial_curves import DriftRecorder, TrainLossRecorder
from lrfind.study.trial_values import plan_trial
from lrfind.training.loop import LoopState, run_loop
from lrfind.training.metadata import training_metadata
from lrfind.training.setup import lora_run


SAMPLE_STEPS = 20  # DDIM steps per validation sample: enough to judge, cheap next to training
SAMPLE_GUIDANCE = 7.5
PROGRESS_EVERY_S = 1.0  # a trial's status line at most this often (the CLI thins it further for logs)


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


class TrialObjective:
    def __init__(self, ctx: StudyContext):
        self.ctx = ctx

    def __call__(self, trial) -> float | tuple[float, ...]:
        ctx = self.ctx
        trial.set_user_attr(WORKER_ATTR, worker_identity())
        mode = ctx.cfg.epoch_mode
        plan = plan_trial(suggest(trial, ctx.space, mode), ctx.probe, ctx.space, ctx.stats, mode)
        trial_dir = ctx.cfg.out_dir() / "trials" / str(trial.number)
        started = time.time()
        twin = _completed_twin(trial, ctx.cfg)
        if twin is not None:
            return self._copy_twin(trial, twin, trial_dir, started)
        trial.set_user_attr("train_values", plan.train_values)
        trial.set_user_attr("steps_planned", plan.trial_steps)
        try:
            state, lora_state, metrics = self._train(trial, plan, trial_dir)
        except TrainingStopped as stop:
            self._fail(trial, stop.reason)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is a trial failure; the rest is a bug
            if not _is_out_of_memory(err):
                raise
            self._fail(trial, f"out of memory ({type(err).__name__}); lower dim, resolution or batch size")
        if ctx.prompts is not None:
            metrics.update(self._score(lora_state, trial_dir))
        return self._finish(trial, trial_dir, metrics, started)

    def _train(self, trial, plan, trial_dir: Path):
        """Train the plan; returns (loop state, the LoRA to keep, metrics so far)."""
        ctx = self.ctx
        config = trial_train_config(ctx.cfg, plan.train_values, seed=trial_seed(ctx.cfg, trial.number),
                                    output_dir=trial_dir)
        validation_plan = used_validation_steps(plan.validation, plan.trial_steps, plan.epoch_boundaries,
                                                pruner=ctx.cfg.pruner, prunes=not ctx.cfg.pareto,
                                                eval_every_steps=ctx.space.budget.eval_every_steps)
        dataset = with_repeats(ctx.dataset, {folder: n for folder, _, n in plan.concept_repeats})
        started = time.time()
        swept = bool(plan.epoch_boundaries)
        reporter = OptunaReporter(trial, ctx.baseline_val_loss, prune=not ctx.cfg.pareto, best_so_far=swept)
        stopped = None
        with lora_run(config, ctx.components, dataset, ctx.store, ctx.validation_sets, held_out=ctx.held_out,
                      validation_plan=validation_plan) as parts:
            state = LoopState(parts.total_steps, parts.steps_per_epoch)
            drift = None if ctx.drift_probe is None else DriftRecorder(
                ctx.drift_probe, parts, plan.epoch_boundaries or {plan.params.epochs: plan.trial_steps})
            # drift first: the snapshot's choice of epoch weighs the boundary's drift
            snapshots = BestEpochSnapshot(parts.network, plan.epoch_boundaries, drift.by_epoch if drift else None)
            train_losses = TrainLossRecorder(plan.epoch_boundaries)
            callbacks = ([drift] if drift else []) + [snapshots, train_losses, reporter]
            if ctx.progress is not None and ctx.cfg.progress:
                callbacks.append(TrialProgress(trial.number, lambda text: ctx.progress(text, True), PROGRESS_EVERY_S))
            try:
                run_loop(parts, callbacks, state)
            except TrainingStopped as stop:
                # A swept trial that diverges after a good epoch still has that epoch's result:
                # the shorter trial it stands for would have ended before the divergence.
                if not (swept and snapshots.best is not None):
                    raise
                stopped = stop.reason
            finally:
                trial.set_user_attr("steps_done", reporter.last_step)
            if swept and snapshots.best is not None:
                kept_state, lora_state = snapshots.kept_state(state), snapshots.lora_state
            else:
                kept_state = state
                lora_state = {k: v.detach().clone() for k, v in parts.network.kohya_state_dict().items()}
            save_lora(trial_dir / "lora.safetensors", lora_state,
                      training_metadata(config, dataset, ctx.components, kept_state, started), "fp16")
        metrics = {"val_loss": kept_state.val_loss, "val_history": state.val_history, "steps_done": state.step,
                   "steps_planned": plan.trial_steps, "clip_i": None, "clip_t": None}
        metrics.update(self._epochs_metrics(plan, state, snapshots))
        if drift is not None:
            metrics.update(drift.metrics(snapshots.best[0] if swept and snapshots.best is not None else None))
        metrics.update(train_losses.metrics())
        if stopped is not None:
            metrics["stopped_early"] = f"at step {state.step}: {stopped}"
        return state, lora_state, metrics

    def _epochs_metrics(self, plan, state, snapshots) -> dict:
        """The full run the trial stands for; a swept trial's epoch losses and best epoch."""
        from dataclasses import replace

        if not plan.epoch_boundaries or snapshots.best is None:
            return {"full_run": {"steps": plan.full_run.total_steps, "text": plan.full_run.text}}
        epochs = snapshots.best[0]
        full = plan_trial(replace(plan.params, epochs=epochs), self.ctx.probe, self.ctx.space, self.ctx.stats).full_run
        return {SWEPT_EPOCH_ATTR: epochs, EPOCH_LOSSES_ATTR: epoch_losses(state.val_history, plan.epoch_boundaries),
                "full_run": {"steps": full.total_steps, "text": full.text}}

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
        _free_memory()
        raise TrialFailed(reason)


class BestEpochSnapshot:
    """Loop callback of a swept trial: at each epoch boundary, keep the LoRA if its loss is the best.

    Registered before the pruning reporter, so a trial pruned at a boundary still saw it.
    """

    def __init__(self, network, boundaries: dict, drifts: Optional[dict] = None):
        self.network, self.boundaries = network, boundaries
        self.drifts = drifts  # epoch count -> drift, filled by the DriftRecorder before this runs
        self.best: Optional[tuple[int, float]] = None  # (epochs, validation loss)
        self.best_step = 0
        self.lora_state: Optional[dict] = None

    def on_validation(self, state) -> None:
        if state.step not in self.boundaries.values():
            return
        best = best_epoch(state.val_history, self.boundaries, self.drifts)  # epoch_sweep's rule (ties: fewer epochs)
        if best is not None and best != self.best:  # this boundary is the new best
            self.best, self.best_step = best, self.boundaries[best[0]]
            self.lora_state = {k: v.detach().clone() for k, v in self.network.kohya_state_dict().items()}

    def kept_state(self, state):
        """The loop state as of the kept epoch (for the LoRA file's ss_steps/ss_epoch metadata)."""
        from dataclasses import replace

        return replace(state, step=self.best_step, val_loss=self.best[1],
                       epoch=-(-self.best_step // max(1, state.steps_per_epoch)))


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


def _is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
