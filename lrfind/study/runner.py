"""`run_study`: open (or resume) the Optuna study, load model and caches once, run trials.

The model, dataset scan, latent/text caches, probe and baseline validation loss are shared by
every trial of this process; each trial only attaches a fresh LoRA. Probe and baseline are kept
in the study's user attributes, so workers on other machines use the same ones.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lrfind.errors import LrfindError
from lrfind.study.config import StudyConfig
from lrfind.study.storage import masked_url, open_storage, recover_dead_local_trials

log = logging.getLogger("lrfind.study")


class StudyInterrupted(LrfindError):
    """Ctrl-C: the running trial was marked failed; the study resumes with the same command."""


def make_pruner(kind: str):
    import optuna

    return {"hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3),
            "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
            "none": lambda: optuna.pruners.NopPruner()}[kind]()


def open_study(cfg: StudyConfig):
    import optuna

    storage = open_storage(cfg.storage_url(), cfg.heartbeat_interval, cfg.grace_period)
    directions = ["minimize", "maximize", "maximize"] if cfg.pareto else ["minimize"]
    sampler = (optuna.samplers.NSGAIISampler(seed=cfg.seed) if cfg.pareto
               else optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=5))
    study = optuna.create_study(study_name=cfg.name, storage=storage, load_if_exists=True,
                                directions=directions, sampler=sampler,
                                pruner=None if cfg.pareto else make_pruner(cfg.pruner))
    if len(study.directions) != len(directions):
        raise LrfindError(f"study {cfg.name} in {masked_url(cfg.storage_url())} was created "
                          f"{'with' if len(study.directions) > 1 else 'without'} --pareto; rerun it the same way "
                          "or pick a new --name")
    return study


def ensure_probe(cfg: StudyConfig, study, components, dataset, store) -> dict:
    """The probe's report: from the study, else studies/NAME/probe.json, else run the probe."""
    if "probe" in study.user_attrs:
        return study.user_attrs["probe"]
    path = cfg.out_dir() / "probe.json"
    if path.is_file():
        report = json.loads(path.read_text(encoding="utf-8"))
    else:
        from lrfind.probe.config import ProbeConfig
        from lrfind.probe.probe import run_probe

        space_fixed = _space_fixed(cfg)
        probe_cfg = ProbeConfig(dataset=cfg.dataset, model=cfg.model, allow_pickle=cfg.allow_pickle,
                                steps=cfg.probe_steps, resolution=space_fixed["resolution"],
                                batch_size=space_fixed["batch_size"], caption_extension=cfg.caption_extension,
                                seed=cfg.seed, out=cfg.out_dir(), cache_dir=cfg.cache_dir, progress=cfg.progress)
        report = run_probe(probe_cfg, components=components, dataset=dataset, store=store)
    if not report.get("unet_lr"):
        raise LrfindError(f"{path}: the probe found no learning rate (status {report.get('status')}): "
                          f"{report.get('advice', '')} Rerun `lrfind probe` with more --steps, then the study")
    compact = {k: v for k, v in report.items() if k not in ("curve", "range_test")}
    study.set_user_attr("probe", compact)
    return compact


def _space_fixed(cfg: StudyConfig) -> dict:
    from lrfind.study.space import load_space

    space = load_space(cfg.space)
    return {"resolution": space.fixed.resolution, "batch_size": space.fixed.train_batch_size}
