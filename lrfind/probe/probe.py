"""`run_probe`: train (or read a kohya log), analyse, derive, write probe.json and its page."""

from __future__ import annotations

from pathlib import Path

from typing import Optional

from lrfind.artifacts.probe_report import (DatasetSummary, ProbeReport, ProbeSource, RangeTestResult,
                                           read_probe_report)
from lrfind.atomic import write_text
from lrfind.cache import TensorStore, check_cache_dir
from lrfind.data.held_out_images import HeldOutImages
from lrfind.data.kohya import scan_dataset
from lrfind.data.limits import check_repeats
from lrfind.data.steps import dataset_steps_per_epoch
from lrfind.jsonfiles import finite
from lrfind.models.loading import load_components
from lrfind.outputs import check_writable_dir
from lrfind.probe.config import ProbeConfig
from lrfind.probe.derive import derive_settings
from lrfind.probe.held_out import held_out_part, probe_held_out
from lrfind.probe.page import _get_probe_plot_info, held_out_summary, write_probe_page
from lrfind.probe.plateau import analyse_curve
from lrfind.probe.runner import ProbeOutcome, run_adaptive_probe, run_range_test
from lrfind.probe.tb_reader import read_dlr_curve


def run_probe(cfg: ProbeConfig, *, components=None, dataset=None, store=None,
              held_out: Optional[HeldOutImages] = None) -> ProbeReport:
    """Runs what cfg asks for and writes DIR/probe.json and DIR/probe.html. Returns the report.

    `held_out`: the images to hold out of `dataset` (a study's own split; its train_dataset is what
    the probe trains on); None: those cfg's validation options pick from `dataset` (or cfg.dataset).
    probe.json's dataset summary (the step math of a real run) counts every image of `dataset`."""
    check_writable_dir(cfg.out_dir(), "--out")
    outcome = ProbeOutcome()
    if cfg.from_tensorboard is not None:
        tb = read_dlr_curve(cfg.from_tensorboard)
        losses = tb.losses_at_steps()
        outcome.curve = [[s, v, l] for s, v, l in zip(tb.steps, tb.values, losses)]
        source = ProbeSource(tensorboard=str(tb.run_dir), tag=tb.tag)
    else:
        dataset, held_out, components, store = _load(cfg, dataset, held_out, components, store)
        source = ProbeSource(dataset=str(cfg.dataset.train_dir), model=components.name)
        # the probe never trains on a held-out image
        _train(cfg, outcome, (components, held_out.train_dataset, store), held_out.records)
        outcome.held_out_part = held_out_part(held_out, outcome.held_out, ran_adaptive=cfg.method != "range")
    if outcome.curve:
        steps, values, losses = zip(*outcome.curve)
        outcome.plateau = analyse_curve(list(steps), list(values), list(losses))
        outcome.derived = _derive(outcome.plateau, cfg.probe_optimizer)
    report = build_report(cfg, outcome, dataset, source)
    out = cfg.out_dir()
    write_text(out / "probe.json", report.to_json())
    if outcome.plateau is not None:
        info = _get_probe_plot_info(outcome.curve, outcome.plateau, title=f"lrfind probe: {out.name}",
                                    held_out=report.held_out.model_dump() if report.held_out else None)
        write_probe_page(out / "probe.html", info)
    return report


def reuse_or_run_probe(cfg: ProbeConfig, *, components=None, dataset=None, store=None,
                       held_out: Optional[HeldOutImages] = None) -> ProbeReport:
    """The report in OUT/probe.json when there is one (validated: a broken file is an LrfindError
    naming it and the field), else run_probe's. A study and the demo both start this way; a study
    then checks the reused file's split against its own (lrfind.probe.held_out.reused_split_note)."""
    existing = cfg.out_dir() / "probe.json"
    if existing.is_file():
        return read_probe_report(existing)
    return run_probe(cfg, components=components, dataset=dataset, store=store, held_out=held_out)


def _train(cfg: ProbeConfig, outcome: ProbeOutcome, loaded, held_out) -> None:
    components, dataset, store = loaded
    if cfg.method in ("dadaptation", "both"):
        outcome.curve, outcome.logdir = run_adaptive_probe(cfg, components, dataset, store, held_out, outcome.held_out)
    if cfg.method in ("range", "both"):
        outcome.range_points, outcome.range_result = run_range_test(cfg, components, dataset, store, held_out,
                                                                    outcome.held_out)


def _load(cfg: ProbeConfig, dataset, held_out, components, store):
    cache_dir = check_cache_dir(cfg.cache_dir) if store is None else None  # before loading anything
    dataset = dataset or scan_dataset(cfg.dataset)
    check_repeats(dataset)  # a typo such as 10000000_cat: refused before the model loads
    held_out = held_out if held_out is not None else probe_held_out(cfg, dataset)  # a bad --validation-dir too
    components = components or load_components(cfg.model)
    store = store or TensorStore(cache_dir)
    return dataset, held_out, components, store


def _derive(plateau, optimizer: str):
    if plateau.status == "diverged":
        # The last finite d*lr of a diverged run measured 24-78x the AdamW optimum (docs/probe.md):
        # derive only from a plateau the run held before it diverged, if it had one.
        return derive_settings(plateau.earlier_plateau[2], optimizer) if plateau.earlier_plateau else None
    if plateau.value is None or not plateau.value > 0 or plateau.status == "stuck_at_d0":
        return None
    return derive_settings(plateau.value, optimizer)


def build_report(cfg: ProbeConfig, outcome: ProbeOutcome, dataset, source: ProbeSource) -> ProbeReport:
    resolution, batch_size = cfg.dataset_shape
    network = cfg.network  # probe.json keeps kohya's flat names
    values: dict = {"source": source, "optimizer": cfg.probe_optimizer, "method": cfg.method,
                    "network_dim": network.dim, "network_alpha": network.alpha,
                    "network_module": network.module, "network_args": dict(network.args),
                    "resolution": resolution, "batch_size": batch_size, "seed": cfg.seed}
    if outcome.plateau is not None:
        p = outcome.plateau
        values.update(status=p.status, plateau_value=finite(p.value), plateau_step=finite(p.plateau_step),
                      confidence=round(p.confidence, 3), advice=p.advice, steps=len(outcome.curve))
    if outcome.derived is not None and p.status == "diverged":
        first, last, value = p.earlier_plateau
        values["advice"] = (f"{values['advice']} The settings below come from the plateau the run held before "
                            f"it diverged (d*lr {value:.3g}, steps {first:g}-{last:g}).")
    if outcome.derived is not None:
        values["derived"] = outcome.derived
    if outcome.range_result is not None:
        r = outcome.range_result
        values["range_test"] = RangeTestResult(status=r.status, suggested_lr=r.suggested_lr, min_loss_lr=r.min_loss_lr,
                                               diverged_at_lr=r.diverged_at_lr, advice=r.advice,
                                               points=outcome.range_points)
    if dataset is not None:
        values["dataset"] = _dataset_summary(dataset, batch_size)
    values["curve"] = [[s, finite(v), finite(l)] for s, v, l in outcome.curve]
    if outcome.logdir is not None:
        values["tensorboard"] = str(outcome.logdir)
    if outcome.held_out_part is not None:
        values["held_out"] = outcome.held_out_part
    return ProbeReport(**values)


def _dataset_summary(dataset, batch_size: int) -> DatasetSummary:
    groups = [(len(c.images), c.repeats) for c in dataset.concepts]
    return DatasetSummary(name=dataset.name, concepts=[c.name for c in dataset.concepts], images_repeats=groups,
                          images=sum(g[0] for g in groups),
                          steps_per_epoch=dataset_steps_per_epoch(dataset, batch_size))


def summary_text(report: ProbeReport, out: Path) -> str:
    lines = []
    if report.status is not None:
        lines.append(f"d*lr probe ({report.optimizer}, dim {report.network_dim}, alpha {report.network_alpha}, "
                     f"{report.steps} steps): {report.status}, confidence {report.confidence:.2f}")
        if report.plateau_value is not None:
            lines.append(f"  plateau d*lr {report.plateau_value:.4g} from step {report.plateau_step}")
        lines.append(f"  {report.advice}")
    d = report.derived
    if d is not None:
        lo, hi = d.text_encoder_lr_range
        lines += [f"  unet_lr          {d.unet_lr:.3g}   (AdamW lr {d.adamw_lr:.3g})",
                  f"  Lion lr          {d.lion_lr:.3g}   (weight decay x{d.lion_weight_decay_factor:g})",
                  f"  text_encoder_lr  {d.text_encoder_lr:.3g}   (range {lo:.3g} .. {hi:.3g})",
                  f"  Prodigy          lr=1.0 d_coef={d.prodigy['d_coef']} (no lr to pick)"]
    r = report.range_test
    if r is not None:
        sug = f"{r.suggested_lr:.3g}" if r.suggested_lr else "none"
        lines.append(f"LR range test (AdamW, validation loss): suggested lr {sug} ({r.status}); {r.advice}")
        if d is not None and r.suggested_lr:
            lines.append(f"  side by side: d*lr probe {d.unet_lr:.3g} vs range test {r.suggested_lr:.3g} "
                         f"(ratio {d.unet_lr / r.suggested_lr:.2f})")
    if report.dataset is not None:
        groups = " + ".join(f"{n} images × {r} repeats" for n, r in report.dataset.images_repeats)
        lines.append(f"step math: {groups} / batch {report.batch_size} = {report.dataset.steps_per_epoch} steps per "
                     "epoch; total steps = that × epochs")
    held = held_out_summary(report.held_out.model_dump()) if report.held_out is not None else None
    if held is not None:
        lines += [f"warning: {w}" for w in held["warnings"]] + [held["text"]]
    lines.append(f"wrote {out / 'probe.json'}" + (f" and {out / 'probe.html'}" if report.status is not None else ""))
    return "\n".join(lines)
