"""The probe's held-out images: the same choice a study makes (lrfind.data.held_out_images), the
loss measured on them, and whether a probe.json's split is a study's.

The probe still finds a learning rate from its d*lr curve (or its range test); holding images out
only keeps them out of its training and lets it say how the base model and the probe's training
do on pictures it never saw. A study hands its own split to the probe it runs; a probe.json made
with another split is reused for its lr, with a note (`reused_split_note`, docs/probe.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lrfind.artifacts.probe_report import HeldOutLoss, ProbeReport
from lrfind.data.held_out_images import HeldOutImages, choose_held_out, held_out_from_record
from lrfind.data.kohya import scan_dataset
from lrfind.data.types import Dataset
from lrfind.jsonfiles import finite
from lrfind.probe.config import ProbeConfig

# the study's user attribute holding reused_split_note's note (lrfind.study.study_probe writes it)
PROBE_SPLIT_NOTE_ATTR = "probe_split_note"


@dataclass
class HeldOutMeasures:
    """What the probe's runs measured on the held-out images."""

    baseline: Optional[float] = None  # the base model's loss (a fresh network changes nothing)
    losses: list = field(default_factory=list)  # [(step, loss)] of the d*lr probe
    completed: bool = False  # the d*lr probe ran all its steps (its last loss is the end's)


def probe_held_out(cfg: ProbeConfig, dataset: Dataset) -> HeldOutImages:
    """The images cfg's options hold out of `dataset` (as `lrfind study` would with the same options)."""
    def scan_folder(folder: Path) -> Dataset:
        return scan_dataset(cfg.dataset.model_copy(update={"train_dir": folder}))

    record = choose_held_out(dataset, fraction=cfg.validation_split, min_images=cfg.validation_min_images,
                             seed=cfg.seed, validation_dir=cfg.validation_dir, scan_folder=scan_folder)
    return held_out_from_record(dataset, record, scan_folder, f"the probe's held-out images ({cfg.dataset.train_dir})")


def evaluation_steps(steps: int, evals: int) -> tuple[int, ...]:
    """`evals` steps spread evenly over a run of `steps`, the last one its end."""
    return tuple(sorted({max(1, round(steps * k / evals)) for k in range(1, evals + 1)}))


def held_out_part(held: HeldOutImages, measured: HeldOutMeasures, *, ran_adaptive: bool) -> HeldOutLoss:
    """probe.json's held_out: the choice, and the losses measured (None where none could be)."""
    record = {k: v for k, v in held.record.items() if k in HeldOutLoss.model_fields}
    record.setdefault("source", held.source)
    if not held.records:
        return HeldOutLoss(**record, reason="no image held out: " + (
            "; ".join(held.warnings) or "validation split 0") + "; the probe trained and validated on every image")
    losses = [(int(step), finite(loss)) for step, loss in measured.losses]
    reason = ""
    if not ran_adaptive:
        reason = "only the range test ran: its points are the held-out losses"
    elif not measured.completed:
        reason = "the d*lr probe stopped before its last step (diverged): no loss at its end"
    at_end = losses[-1][1] if ran_adaptive and measured.completed and losses else None
    return HeldOutLoss(**record, baseline_loss=finite(measured.baseline),
                       losses=tuple((s, v) for s, v in losses if v is not None), loss_at_end=at_end, reason=reason)


def reused_split_note(report: ProbeReport, held: HeldOutImages, path: Path) -> Optional[str]:
    """None when the probe in `path` held out exactly the images `held` does; else what reusing it means."""
    wanted = set(held.images)
    if report.held_out is not None and report.held_out.source == (held.source if held.records else "none") \
            and set(report.held_out.images) == wanted and report.held_out.dir == held.record.get("dir"):
        return None
    fix = ("delete it (or rerun `lrfind probe` with the study's --validation-split/--validation-min-images/"
           "--validation-dir and --seed) to probe on the study's split")
    if report.held_out is None:
        made = "read a kohya log" if report.source.tensorboard else "was made before the probe held images out"
        return (f"{path} {made}: the study uses its lr, but the probe may have trained on the study's {len(wanted)} "
                f"held-out image(s) and reports no loss on them; {fix}")
    if held.source == "dir":  # the study's held-out images are not in the dataset: no probe trained on them
        trained = 0
    else:
        trained = len(wanted - set(report.held_out.images)) if report.held_out.source == "split" else len(wanted)
    return (f"{path} holds out other images than the study ({trained} of the study's {len(wanted)} held-out "
            f"image(s) were trained on by the probe): the study uses its lr, but its held-out loss is not on the "
            f"study's images; {fix}")
