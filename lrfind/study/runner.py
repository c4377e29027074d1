"""`run_study`: open (or resume) the Optuna study, load model and caches once, run trials.

The model, dataset scan, latent/text caches, probe and baseline validation loss are shared by
every trial of this process; each trial only attaches a fresh LoRA. Probe and baseline are kept
in the study's user attributes, so workers on other machines use the same ones.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import Optional

import lrfind
from lrfind.artifacts.probe_report import ProbeReport
from lrfind.artifacts.recommendation import Recommendation
from lrfind.atomic import disk_full_as_error, write_text
from lrfind.cache import TensorStore, default_cache_dir
from lrfind.data.kohya import scan_dataset
from lrfind.data.limits import check_repeats
from lrfind.errors import Interrupted, LrfindError
from lrfind.models.loading import load_components, model_family
from lrfind.secrets import mask_url
from lrfind.study.cohort_trials import CohortObjective
from lrfind.study.config import StudyConfig
from lrfind.study.free_heap import return_free_heap
from lrfind.study.held_out import ensure_held_out
from lrfind.study.objective import QuietTrialLog, StudyContext, TrialFailed, TrialObjective
from lrfind.study.overrides import with_train_options
from lrfind.study.preflight import LORA_PARAMS_PER_RANK, check_input_models, check_output_places, check_study_space
from lrfind.study.probe_point import PROBE_POINT_ATTR, probe_point
from lrfind.study.progress import RUN_ATTR, StudyProgress, run_target
from lrfind.study.pruning import make_pruner
from lrfind.study.recommend import TrialRecord, recommend
from lrfind.study.sample_scorers import (check_same_dino, clip_scorer, dino_scorer, embed_references,
                                         objective_weights)
from lrfind.study.samplers import make_sampler
from lrfind.study.scoring import (TrialScores, describe_objective, objective_value,
                                  pareto_directions, pareto_names)
from lrfind.study.space import load_space
from lrfind.study.stats import DatasetStats
from lrfind.study.study_probe import ensure_probe
from lrfind.study.storage import SqliteDatabase, open_storage, recover_dead_local_trials, sqlite_path
from lrfind.study.study_end import (
    EndAwareObjective,
    counted_trials,
    finished_trials,
    optimize_surviving,
    overrun_note,
    settle_end,
)
from lrfind.study.trial_config import trial_train_config
from lrfind.study.trial_curves import study_drift_probe
from lrfind.study.worker_storage import WorkerStorage, fail_dead_trials, keeps_heartbeats
from lrfind.training.run_options import given
from lrfind.training.setup import lora_run

log = logging.getLogger("lrfind.study")


class StudyInterrupted(LrfindError):
    """Ctrl-C: the running trial was marked failed; the study resumes with the same command."""


def sampler_seed(seed: int) -> int:
    """--seed mixed with this process's id: workers sharing one study (any storage) must not draw the
    same parameters, which equal sampler seeds would make them do. Trials' training seeds depend on
    --seed only (objective.trial_seed), so a trial is reproducible whatever worker ran it."""
    import os

    return (seed * 1_000_003 + os.getpid()) % 2**32


def enqueue_probe_point(study, space, probe: ProbeReport) -> None:
    """A new study's first trial is the probe's own advice (lrfind.study.probe_point), once."""
    if study.user_attrs.get(PROBE_POINT_ATTR) or study.get_trials(deepcopy=False):
        return
    study.set_user_attr(PROBE_POINT_ATTR, True)  # before enqueueing: a second worker skips it
    point = probe_point(space, probe)
    if point:
        study.enqueue_trial(point, skip_if_exists=True)


def open_study(cfg: StudyConfig, directions: list[str], budget=None):
    import optuna

    storage = open_storage(cfg.storage_url(), cfg.heartbeat_interval, cfg.grace_period, storage_class=WorkerStorage)
    seed = cfg.sampler_seed if cfg.sampler_seed is not None else sampler_seed(cfg.seed)
    sampler = (optuna.samplers.NSGAIISampler(seed=seed) if cfg.pareto
               else make_sampler(cfg.sampler, seed, deterministic=cfg.trial_seed == "same"))
    study = optuna.create_study(study_name=cfg.name, storage=storage, load_if_exists=True,
                                directions=directions, sampler=sampler,
                                pruner=None if cfg.pareto else make_pruner(cfg.pruner, budget))
    if len(study.directions) != len(directions):
        if cfg.pareto and len(study.directions) > 1:  # another set of objectives: --dino or --score changed
            raise LrfindError(f"study {cfg.name} in {mask_url(cfg.storage_url())} has {len(study.directions)} "
                              f"objectives ({', '.join(study.metric_names or ())}), this run {len(directions)}; "
                              "rerun it with the same --dino and --score, or pick a new --name")
        raise LrfindError(f"study {cfg.name} in {mask_url(cfg.storage_url())} was created "
                          f"{'with' if len(study.directions) > 1 else 'without'} --pareto; rerun it the same way "
                          "or pick a new --name")
    return study


def _space_fixed(cfg: StudyConfig) -> dict:
    space = _load_space(cfg)
    return {"resolution": space.fixed.resolution, "batch_size": space.fixed.train_batch_size}


def ensure_baseline(study, ctx_parts, validation_memo: Optional[dict] = None, held_out=()) -> float:
    """The base model's validation loss (a LoRA with zero up-weights changes nothing) on the
    study's held-out images: computed once per study and kept in its user attributes, which a
    resumed run and every worker read."""
    if "baseline_val_loss" in study.user_attrs:
        return float(study.user_attrs["baseline_val_loss"])

    cfg, space, components, dataset, store = ctx_parts
    # one step's setup, never trained: no torch.compile (its compile would buy nothing)
    config = trial_train_config(cfg, {**space.fixed.train_values(), "max_train_steps": 1, "torch_compile": False},
                                seed=cfg.seed)
    with lora_run(config, components, dataset, store, validation_memo, held_out=held_out) as parts:
        baseline = parts.validation.loss(parts.unet, parts.conditioner, parts.device, parts.dtype)
        per_rank = parts.network.trainable_parameter_count() / config.network.dim
    study.set_user_attr(LORA_PARAMS_PER_RANK, per_rank)  # for the free-space estimate of later runs
    study.set_user_attr("baseline_val_loss", baseline)
    return baseline


def _load_space(cfg: StudyConfig):
    """The space with --trial-budget and the study's training options (--resolution, ...) applied."""
    family = model_family(cfg.model.model)  # SDXL models read the SDXL presets (1024 px, ...)
    space = with_train_options(load_space(cfg.space, family.name if family else None), given(cfg.run), cfg.space)
    return space.with_budget(cfg.trial_budget) if cfg.trial_budget is not None else space


def check_same_space(cfg: StudyConfig, study, space) -> None:
    """Optuna can't change a categorical parameter's choices within a study: say so clearly."""
    stored = study.user_attrs.get("space")
    if stored is None:
        return
    current = space.model_dump(mode="json")
    keys = ("network_dim", "network_alpha_fraction", "epochs", "repeats", "lr_multiplier", "optimizer", "lr_scheduler",
            "network_type", "conv_dim_fraction", "lokr_factor")
    # studies from before network types stored none of them: they searched LoRA only
    before_types = {"network_type": {"choices": ["lora"]}, "conv_dim_fraction": None, "lokr_factor": None}
    changed = [k for k in keys if stored.get(k, before_types.get(k)) != current.get(k)]
    if changed:
        raise LrfindError(f"study {cfg.name} was run with another search space ({', '.join(changed)} differ); "
                          "pass the same --space to resume it, or start a new study with another --name")


def _environment(components) -> dict:
    import platform
    import socket

    import diffusers
    import optuna
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})"
    return {"lrfind": lrfind.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "optuna": optuna.__version__, "python": platform.python_version(), "device": device,
            "host": socket.gethostname(), "model": components.name}


def build_context(cfg: StudyConfig, study, space, weights):
    # dataset and model as every trial reads them (resolution, batch size, buckets of the space's [fixed])
    shared = trial_train_config(cfg, {**space.fixed.train_values(), "max_train_steps": 1}, seed=cfg.seed)
    dataset_config = shared.dataset
    dataset = scan_dataset(dataset_config)
    check_repeats(dataset)  # a typo such as 10000000_cat: refused before the model loads
    held = ensure_held_out(study, cfg, dataset, lambda folder: scan_dataset(
        dataset_config.model_copy(update={"train_dir": folder, "reg_dir": None})))
    components = load_components(shared.model)
    store = TensorStore(cfg.cache_dir or default_cache_dir())
    scorer = clip_scorer(cfg, weights, components)
    dino, dino_note = dino_scorer(cfg, weights)  # loaded before the probe trains: a bad model stops it first
    probe, probe_notes = ensure_probe(cfg, study, (components, dataset, held, store), _space_fixed(cfg))
    validation_sets: dict = {}
    baseline = ensure_baseline(study, (cfg, space, components, held.train_dataset, store), validation_sets,
                               held_out=held.records)
    stats = DatasetStats.from_dataset(held.train_dataset)  # what trials train on; the final run trains on all
    ctx = StudyContext(cfg=cfg, space=space, probe=probe, components=components, dataset=held.train_dataset,
                       stats=stats, store=store, baseline_val_loss=baseline, weights=weights, scorer=scorer,
                       validation_sets=validation_sets, held_out=held.records, warnings=held.warnings + probe_notes,
                       final_stats=DatasetStats.from_dataset(dataset), dino_scorer=dino)
    ctx.warnings += (dino_note,) if dino_note else ()
    if weights.drift > 0:  # the base model's predictions, once; a weight of 0 uses no drift: none is measured
        ctx.drift_probe = study_drift_probe(space, components, dataset)
    if scorer is not None or dino is not None:
        embed_references(ctx, study, held, dataset)
    # dataset_stats: every image (what the dataset is, and the final run trains on); trained_dataset_stats:
    # the trials' share, without the held-out images
    for key, value in {"dataset_stats": ctx.final_stats.to_dict(), "trained_dataset_stats": stats.to_dict(),
                       "space": space.model_dump(mode="json"),
                       "model": components.name, "clip_model": scorer.name if scorer else None,
                       "clip_calibrated": scorer.calibrated if scorer else None,
                       "dino_model": dino.name if dino else None,
                       "objective": describe_objective(weights), "environment": _environment(components),
                       "dataset": str(cfg.dataset.train_dir)}.items():
        study.set_user_attr(key, value)
    return ctx


@dataclass(frozen=True)
class StudyOutcome:
    """What a study run returns: its recommendation and the summary the CLI prints."""

    recommendation: Recommendation
    summary: str  # the recommendation's paragraph, how the end was counted, where it was written
    recovered: list
    warnings: tuple[str, ...] = ()  # what the study could not do (e.g. hold images out), evented as it began


class _StopWhenDone:
    """Stop once n_trials trials finished (complete or pruned), counting every worker's trials;
    after too many failures in a row, rather than failing forever; and once the sampler proposes
    only points already trained (twins, see objective._completed_twin): the space is exhausted."""

    def __init__(self, n_trials: int, max_consecutive_failures: int = 5, max_consecutive_twins: int = 10):
        self.n_trials, self.max_failures, self.failures = n_trials, max_consecutive_failures, 0
        self.max_twins, self.twins = max_consecutive_twins, 0

    def __call__(self, study, trial) -> None:
        from optuna.trial import TrialState

        self.failures = self.failures + 1 if trial.state == TrialState.FAIL else 0
        self.twins = self.twins + 1 if "duplicate_of" in trial.user_attrs else 0
        if (finished_trials(study) >= self.n_trials or self.failures >= self.max_failures
                or self.twins >= self.max_twins):
            study.stop()


def retry_dead_workers_trials(study, trial=None) -> None:
    """Optuna callback: a local worker killed mid-trial (lrfind.study.workers) has its trial failed and
    retried by the next worker to finish one, not only when a worker starts. RDB storages do this
    through their heartbeats before each trial (worker_storage), with the reason worker_storage writes."""
    if not keeps_heartbeats(study):
        recover_dead_local_trials(study)


def run_study(cfg: StudyConfig, progress=None) -> StudyOutcome:
    """progress: None, or a callable(text, transient) for live status lines (lrfind.study.progress):
    transient ones (a running trial's step) are replaced by the next, the others are the study's."""
    check_output_places(cfg)
    check_input_models(cfg)
    database = sqlite_path(cfg.storage_url())
    # A full disk under Optuna's sqlite file ("database or disk is full") names that file; trial
    # files name themselves (lrfind.atomic).
    with disk_full_as_error(database or cfg.out_dir()), \
            (SqliteDatabase(database) if database else contextlib.nullcontext()) as guard:
        return _run_study(cfg, guard, progress)


def _run_study(cfg: StudyConfig, database: "SqliteDatabase | None", progress=None) -> StudyOutcome:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _load_space(cfg)
    weights = objective_weights(cfg, space)
    study = open_study(cfg, pareto_directions(weights) if cfg.pareto else ["minimize"], space.budget)
    if cfg.pareto and study.metric_names is None:  # the report labels each objective with its term
        with warnings.catch_warnings():  # Optuna calls it experimental; the CLI would print that to users
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(pareto_names(weights))
    if database is not None:
        database.opened()
    check_same_space(cfg, study, space)
    check_same_dino(cfg, study)
    say = _announcer(progress)  # library code does not print: lines go to the caller's progress (the CLI prints)
    recovered = fail_dead_trials(study)
    if recovered:
        say(f"trial(s) {recovered} of worker(s) that died: marked failed (fail_reason says which worker, when) "
              "and retried")
    ctx = build_context(cfg, study, space, weights)
    ctx.progress = progress
    for line in ctx.warnings if progress is not None else ():  # what the split could not do: the CLI prints it
        progress(f"warning: {line}", False)
    check_study_space(cfg, study, ctx, finished_trials(study))
    enqueue_probe_point(study, space, ctx.probe)
    stopper = _StopWhenDone(cfg.n_trials)
    if finished_trials(study) < cfg.n_trials:
        say(f"study {cfg.name} in {mask_url(cfg.storage_url())}: {finished_trials(study)}/{cfg.n_trials} "
              f"trials finished; running" + (f" up to {cfg.trials_at_once} at once" if cfg.trials_at_once > 1 else ""))
        quiet = QuietTrialLog()
        logging.getLogger(QuietTrialLog.LOGGER).addFilter(quiet)
        study.set_user_attr(RUN_ATTR, run_target(cfg.n_trials, cfg.timeout_seconds))  # for lrfind status
        callbacks = [return_free_heap, retry_dead_workers_trials, stopper]
        if progress is not None:
            callbacks.append(StudyProgress(lambda text: progress(text, False)))
        objective = TrialObjective(ctx)
        if cfg.trials_at_once > 1:
            objective = CohortObjective(objective, cfg.trials_at_once, cfg.n_trials, callbacks)
        try:
            taken_over = optimize_surviving(study, EndAwareObjective(objective, cfg.n_trials), cfg.n_trials,
                                            ctx.cfg.timeout_seconds, callbacks=callbacks,
                                            catch=(TrialFailed,), gc_after_trial=True, show_progress_bar=False)
        except KeyboardInterrupt:
            raise Interrupted(f"study interrupted; the running trial was marked failed and the database is "
                              f"consistent. Resume with the same command (storage {mask_url(cfg.storage_url())}).") from None
        finally:
            logging.getLogger(QuietTrialLog.LOGGER).removeFilter(quiet)
        if taken_over:
            say(f"trial(s) {taken_over} of this worker were failed by another worker, which took this one for "
                  "dead (heartbeats later than --grace-period: an overloaded machine or a slow database); "
                  "they are retried, and this worker went on")
        if stopper.failures >= stopper.max_failures:
            say(f"stopped after {stopper.failures} failed trials in a row; see fail_reason in the report")
        if stopper.twins >= stopper.max_twins:
            say(f"stopped: the last {stopper.twins} trials proposed points already trained; the space is "
                  "explored at this budget (widen it in the space TOML for more)")
    return finish_study(cfg, study, ctx, say)


def _announcer(progress):
    """One lasting line of the study's own (not a trial's status) to `progress`; none without one."""
    return (lambda text: progress(text, False)) if progress is not None else (lambda text: None)


def finish_study(cfg: StudyConfig, study, ctx, say=lambda text: None) -> StudyOutcome:
    from dataclasses import replace

    still_running = []
    if finished_trials(study) >= cfg.n_trials:  # the study is done: recommend from its final trials
        still_running = settle_end(study, cfg.n_trials, cfg.grace_period,
                                   on_wait=lambda running: say(_waiting_text(running)))
    trials = counted_trials(study.get_trials(deepcopy=False))
    # value: a --pareto trial's scalar is recomputed from its metrics (_scalar_value)
    records = [replace(TrialRecord.from_frozen_trial(t), value=_scalar_value(t, ctx)) for t in trials]
    rec = recommend(records, ctx.space, ctx.probe, ctx.stats, final_stats=ctx.final_stats)
    write_text(cfg.out_dir() / "recommendation.json", rec.to_json())
    study.set_user_attr("recommendation", rec.to_dict())
    note = overrun_note(trials, cfg.n_trials, still_running)
    summary = rec.summary + (f"\n{note}" if note else "") + f"\nwrote {cfg.out_dir() / 'recommendation.json'}"
    return StudyOutcome(rec, summary, [], tuple(ctx.warnings))


def _waiting_text(running: list[int]) -> str:
    return (f"the study has its trials; waiting for trial(s) {running} still running on other workers, so that "
            "every worker recommends from the same trials")


def _scalar_value(trial, ctx) -> float | None:
    """The trial's objective; a --pareto trial's is recomputed from its metrics with the weights."""
    if not trial.values:
        return None
    if len(trial.values) == 1:
        return float(trial.values[0])
    attrs = trial.user_attrs
    return objective_value(TrialScores(val_loss=attrs["val_loss"], baseline_val_loss=ctx.baseline_val_loss,
                                       drift=attrs.get("drift"), clip_i=attrs.get("clip_i"),
                                       clip_t=attrs.get("clip_t"), dino=attrs.get("dino")), ctx.weights)
