"""One Optuna trial: plan it from the space, train through the shared loop, score, save artifacts."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from lrfind.atomic import write_json
from lrfind.errors import TrainingStopped
from lrfind.study.storage import WORKER_ATTR, worker_identity


SAMPLE_STEPS = 20  # DDIM steps per validation sample: enough to judge, cheap next to training
SAMPLE_GUIDANCE = 7.5


class TrialFailed(Exception):
    """The trial could not produce a value (NaN loss, out of memory); the study goes on."""


@dataclass
class StudyContext:
    """What every trial of this process shares: loaded once."""

    cfg: Any  # StudyConfig
    space: Any  # SearchSpace
    probe: dict
    components: Any
    dataset: Any
    stats: Any  # DatasetStats
    store: Any
    baseline_val_loss: float
    weights: Any  # ObjectiveWeights
    scorer: Any = None  # ClipScorer or None (loss-only scoring)
    prompts: Optional[list] = None  # [(prompt, seed)]
    train_images: Optional[list] = None  # PIL images for CLIP-I


class TrialObjective:
    def __init__(self, ctx: StudyContext):
        self.ctx = ctx

    def __call__(self, trial) -> float | tuple[float, ...]:
        from lrfind.study.space import suggest
        from lrfind.study.trial_values import plan_trial

        ctx = self.ctx
        trial.set_user_attr(WORKER_ATTR, worker_identity())
        plan = plan_trial(suggest(trial, ctx.space), ctx.probe, ctx.space, ctx.stats)
        trial_dir = ctx.cfg.out_dir() / "trials" / str(trial.number)
        started = time.time()
        trial.set_user_attr("train_values", plan.train_values)
        trial.set_user_attr("steps_planned", plan.trial_steps)
        trial.set_user_attr("full_run", {"steps": plan.full_run.total_steps, "text": plan.full_run.text})
        try:
            state, lora_state = self._train(trial, plan, trial_dir)
        except TrainingStopped as stop:
            self._fail(trial, stop.reason)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is a trial failure; the rest is a bug
            if not _is_out_of_memory(err):
                raise
            self._fail(trial, f"out of memory ({type(err).__name__}); lower dim, resolution or batch size")
        metrics = {"val_loss": state.val_loss, "val_history": state.val_history, "steps_done": state.step,
                   "steps_planned": plan.trial_steps, "clip_i": None, "clip_t": None}
        if ctx.scorer is not None:
            metrics.update(self._score(lora_state, trial_dir))
        return self._finish(trial, trial_dir, metrics, started)

    def _train(self, trial, plan, trial_dir: Path):
        from lrfind.data.types import with_repeats
        from lrfind.network import save_lora
        from lrfind.study.pruning import OptunaReporter
        from lrfind.training.config import TrainConfig
        from lrfind.training.loop import run_loop
        from lrfind.training.metadata import training_metadata
        from lrfind.training.setup import lora_run

        ctx = self.ctx
        config = TrainConfig(train_data_dir=ctx.cfg.dataset, pretrained_model_name_or_path=ctx.cfg.model,
                             caption_extension=ctx.cfg.caption_extension, seed=trial_seed(ctx.cfg, trial.number),
                             output_dir=trial_dir, output_name="lora", progress=False,
                             cache_dir=ctx.cfg.cache_dir, **plan.train_values)
        dataset = with_repeats(ctx.dataset, {folder: n for folder, _, n in plan.concept_repeats})
        started = time.time()
        reporter = OptunaReporter(trial, ctx.baseline_val_loss, prune=not ctx.cfg.pareto)
        with lora_run(config, ctx.components, dataset, ctx.store) as parts:
            try:
                state = run_loop(parts, [reporter])
            finally:
                trial.set_user_attr("steps_done", reporter.last_step)
            lora_state = {k: v.detach().clone() for k, v in parts.network.kohya_state_dict().items()}
            save_lora(trial_dir / "lora.safetensors", lora_state,
                      training_metadata(config, dataset, ctx.components, state, started), "fp16")
        return state, lora_state

    def _score(self, lora_state: dict, trial_dir: Path) -> dict:
        from lrfind.study.samples import save_samples, score_samples

        ctx = self.ctx
        scores = score_samples(ctx.components, lora_state, ctx.prompts, ctx.train_images, ctx.scorer,
                               size=ctx.space.fixed.resolution, steps=SAMPLE_STEPS, guidance=SAMPLE_GUIDANCE)
        paths = save_samples(scores.images, trial_dir / "samples", scores.prompts, scores.seeds)
        out = ctx.cfg.out_dir()
        return {"clip_i": scores.clip_i, "clip_t": scores.clip_t, "clip_calibrated": scores.calibrated,
                "samples": [str(Path(p).relative_to(out)) for p in paths], "sample_prompts": scores.prompts,
                "sample_seeds": scores.seeds}

    def _finish(self, trial, trial_dir: Path, metrics: dict, started: float):
        from lrfind.study.scoring import loss_ratio, objective_value, pareto_values

        ctx = self.ctx
        metrics["val_loss_ratio"] = loss_ratio(metrics["val_loss"], ctx.baseline_val_loss)
        metrics["seconds"] = round(time.time() - started, 2)
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        write_json(trial_dir / "metrics.json", {"number": trial.number, "params": trial.params, **metrics})
        args = (metrics["val_loss"], ctx.baseline_val_loss, metrics["clip_i"], metrics["clip_t"], ctx.weights)
        if ctx.cfg.pareto:
            return tuple(pareto_values(*args))
        return objective_value(*args)

    def _fail(self, trial, reason: str):
        trial.set_user_attr("fail_reason", reason)
        _free_memory()
        raise TrialFailed(reason)


def trial_seed(cfg, number: int) -> int:
    """The training seed of trial `number` (StudyConfig.trial_seed says which rule)."""
    return cfg.seed if cfg.trial_seed == "same" else cfg.seed + number


def _is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
