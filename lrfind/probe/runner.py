"""Run the probe: a DAdaptation/Prodigy training (or an LR range test) through the shared loop,
then the pure analysis, then probe.json + a small HTML page.

The probe trains the UNet LoRA only, with one lr (1.0) and a constant schedule: D-Adaptation and
Prodigy share one `d` across parameter groups, so a second group would only rescale it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lrfind.artifacts.probe_report import DerivedLrs
from lrfind.config import OptimizerConfig
from lrfind.errors import TrainingStopped
from lrfind.optimizers import optimizer_entry
from lrfind.probe.config import ProbeConfig
from lrfind.probe.held_out import HeldOutMeasures, evaluation_steps
from lrfind.training.config import TrainConfig
from lrfind.training.plan import ValidationPlan


@dataclass
class ProbeOutcome:
    curve: list = field(default_factory=list)  # [step, d*lr, loss] rows
    plateau: object = None  # PlateauResult
    derived: Optional[DerivedLrs] = None  # None: no lr found
    range_points: list = field(default_factory=list)  # [step, lr, validation loss] rows
    range_result: object = None  # RangeResult or None
    logdir: Optional[Path] = None
    held_out: HeldOutMeasures = field(default_factory=HeldOutMeasures)
    held_out_part: object = None  # HeldOutLoss for probe.json (None: a kohya log)


def probe_train_config(cfg: ProbeConfig, **overrides) -> TrainConfig:
    """The probe's training run; `overrides`: TrainConfig fields (the range test's optimizer and steps)."""
    # the probe optimizer at lr 1.0 with the args lrfind runs it with (its lrfind.optimizers module)
    probe_optimizer = optimizer_entry(cfg.probe_optimizer)
    values = dict(
        dataset=cfg.dataset, model=cfg.model,
        network=cfg.network.model_copy(update={"train_unet_only": True}),
        optimizer=OptimizerConfig(type=probe_optimizer.name, args=dict(probe_optimizer.default_args),
                                  learning_rate=probe_optimizer.default_lr),
        max_train_steps=cfg.steps, seed=cfg.seed, validate_every_n_steps=cfg.steps, cache_dir=cfg.cache_dir,
        progress=cfg.progress, output_dir=cfg.out_dir(), output_name="probe",
    )
    values.update(overrides)
    return TrainConfig(**values)


def run_adaptive_probe(cfg: ProbeConfig, components, dataset, store, held_out=(),
                       measured: Optional[HeldOutMeasures] = None) -> tuple[list, Path]:
    """The d*lr curve and its TensorBoard folder. `dataset` holds only the images to train on;
    with `held_out` images the run validates on them at evaluation_steps and fills `measured`."""
    from lrfind.training.callbacks import CurveRecorder, ProgressBar, TensorBoardLogger
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    # without held-out images the run validates once, at its end, as before (on its training images)
    plan = ValidationPlan.at(evaluation_steps(cfg.steps, cfg.held_out_evals)) if held_out else None
    config = probe_train_config(cfg)
    logdir = cfg.out_dir() / "logs" / f"probe_{cfg.probe_optimizer}"
    recorder, losses = CurveRecorder("unet"), _HeldOutLosses()
    with lora_run(config, components, dataset, store, held_out=held_out or None, validation_plan=plan) as parts:
        _measure_baseline(parts, held_out, measured)
        callbacks = [recorder, losses, TensorBoardLogger(logdir), ProgressBar(f"probe ({cfg.probe_optimizer})", cfg.progress)]
        try:
            run_loop(parts, callbacks)
        except TrainingStopped:
            pass  # a NaN run is a result: the analysis reports it as diverged
    rows = [[step, d_lr, loss] for step, d_lr, loss, _ in recorder.rows]
    if held_out and measured is not None:
        measured.losses = losses.rows
        measured.completed = len(rows) >= cfg.steps
    if len(rows) < cfg.steps:  # stopped early: mark the tail so the analysis sees the divergence
        rows.append([len(rows) + 1, math.nan, math.nan])
    return rows, logdir


def _measure_baseline(parts, held_out, measured: Optional[HeldOutMeasures]) -> None:
    """The base model's held-out loss, once: before the first step the fresh network changes nothing."""
    if held_out and measured is not None and measured.baseline is None and parts.validation is not None:
        measured.baseline = parts.validation.loss(parts.unet, parts.conditioner, parts.device, parts.dtype)


class _HeldOutLosses:
    """(step, validation loss) at each of the loop's validations."""

    def __init__(self):
        self.rows: list = []

    def on_validation(self, state) -> None:
        self.rows.append((state.step, state.val_loss))


class _RangeSweep:
    """Sets the sweep's lr before each step and stops once the validation loss diverges."""

    def __init__(self, parts, cfg: ProbeConfig):
        from lrfind.probe.lr_range import DIVERGENCE_FACTOR, exponential_lr

        self.parts, self.cfg, self.points = parts, cfg, []
        self.lr_at = lambda step: exponential_lr(step, cfg.range_steps, cfg.range_min_lr, cfg.range_max_lr)
        self.limit = DIVERGENCE_FACTOR
        self.best = math.inf
        # The sweep moves the first group's lr; the others keep their ratio to it (LoRA+'s lora_up
        # groups train at lr x loraplus ratio).
        groups = self.parts.optimizer.param_groups
        self.ratios = [float(g["lr"]) / float(groups[0]["lr"]) if groups[0]["lr"] else 1.0 for g in groups]
        self._set_lr(0)

    def _set_lr(self, step: int) -> None:
        for group, ratio in zip(self.parts.optimizer.param_groups, self.ratios):
            group["lr"] = self.lr_at(step) * ratio

    def on_step_end(self, state) -> None:
        self._set_lr(state.step)

    def on_validation(self, state) -> None:
        self.points.append([state.step, self.lr_at(state.step - 1), state.val_loss])
        self.best = min(self.best, state.val_loss)
        if not math.isfinite(state.val_loss) or state.val_loss > self.limit * self.best:
            raise TrainingStopped("validation loss diverged", state.step)


def run_range_test(cfg: ProbeConfig, components, dataset, store, held_out=(),
                   measured: Optional[HeldOutMeasures] = None):
    """The sweep's (step, lr, validation loss) points and their analysis; with `held_out` images
    the validation loss is theirs (`dataset` then holds only the images to train on)."""
    from lrfind.probe.lr_range import analyse_range
    from lrfind.training.callbacks import ProgressBar
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    config = probe_train_config(cfg, optimizer=OptimizerConfig(type="AdamW", learning_rate=cfg.range_min_lr),
                                max_train_steps=cfg.range_steps, validate_every_n_steps=cfg.range_eval_every)
    with lora_run(config, components, dataset, store, held_out=held_out or None) as parts:
        _measure_baseline(parts, held_out, measured)
        parts.lr_scheduler = _NoSchedule()  # the sweep sets the lr itself
        sweep = _RangeSweep(parts, cfg)
        try:
            run_loop(parts, [sweep, ProgressBar("probe (range test)", cfg.progress)])
        except TrainingStopped:
            pass
    points = sweep.points
    return points, analyse_range([p[1] for p in points], [p[2] for p in points])


class _NoSchedule:
    def step(self) -> None:
        pass
