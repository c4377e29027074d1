"""The study's probe: read from the study, reused from studies/NAME/probe.json, or run there on
the study's own held-out split, so the probe never trains on an image the study holds out.

A probe.json that held out other images (or none: an earlier lrfind, a kohya log) is used for its
lr, which depends little on a fifth of the images, with a note the study prints and keeps in its
user attribute PROBE_SPLIT_NOTE_ATTR (docs/probe.md): rerunning would throw away a probe the user
may have made on purpose (from a kohya log, or with other steps).
"""

from __future__ import annotations

from lrfind.artifacts.probe_report import ProbeReport
from lrfind.errors import LrfindError
from lrfind.probe.config import ProbeConfig
from lrfind.probe.held_out import PROBE_SPLIT_NOTE_ATTR, reused_split_note
from lrfind.probe.probe import reuse_or_run_probe
from lrfind.study.config import StudyConfig

def ensure_probe(cfg: StudyConfig, study, loaded, space_fixed: dict) -> tuple[ProbeReport, tuple[str, ...]]:
    """The probe's report (without its curves) and notes on it: from the study, else
    studies/NAME/probe.json, else run the probe there on the study's own split (`held`: it never
    trains on a held-out image). A probe.json that held out other images is used for its lr, with
    a note saying so (docs/probe.md). `loaded`: (components, the whole dataset, the study's
    StudyHeldOut, the feature store); `space_fixed`: the space's resolution and batch size."""
    components, dataset, held, store = loaded
    if "probe" in study.user_attrs:
        note = study.user_attrs.get(PROBE_SPLIT_NOTE_ATTR)
        return ProbeReport.from_dict(study.user_attrs["probe"], f"study {cfg.name} (its probe attribute)"), \
            (note,) if note else ()
    path = cfg.out_dir() / "probe.json"
    # the study's own parts; the space fixes the resolution and batch size the trials train at
    probe_dataset = cfg.dataset.model_copy(update={k: space_fixed[k] for k in ("resolution", "batch_size")})
    probe_cfg = ProbeConfig(dataset=probe_dataset, model=cfg.model, steps=cfg.probe_steps, seed=cfg.seed,
                            out=cfg.out_dir(), cache_dir=cfg.cache_dir, progress=cfg.progress,
                            validation_split=cfg.validation_split, validation_min_images=cfg.validation_min_images,
                            validation_dir=cfg.validation_dir)
    report = reuse_or_run_probe(probe_cfg, components=components, dataset=dataset, store=store, held_out=held)
    if not report.unet_lr:
        raise LrfindError(f"{path}: the probe found no learning rate (status {report.status}): "
                          f"{report.advice or ''} Rerun `lrfind probe` with more --steps, then the study")
    note = reused_split_note(report, held, path)
    study.set_user_attr("probe", report.study_attribute())
    if note:
        study.set_user_attr(PROBE_SPLIT_NOTE_ATTR, note)  # a resumed run reads the probe from the study: keep why
    return report.without_curves(), (note,) if note else ()
