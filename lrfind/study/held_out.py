"""The study's held-out images: chosen once, recorded in the study, read back by every run.

A study validates every trial, and the base model's baseline, on images no trial trains on
(lrfind.data.holdout): a split of the dataset (`--validation-split`, `--validation-min-images`,
seeded with `--seed`) or a separate kohya-layout folder (`--validation-dir`). The first run of a
study records the held-out paths (relative to the dataset, or to the validation folder) in the
study's user attribute HELD_OUT_ATTR; a resumed run and every other worker read that list instead
of recomputing it, so all trials of a study are scored on the same images whatever the options
or the scan order of a later run. A study whose baseline was measured before held-out images
existed goes on validating on its training images, as its trials did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lrfind.data.held_out_images import HeldOutImages, choose_held_out, held_out_from_record
from lrfind.data.types import Dataset
from lrfind.errors import LrfindError

HELD_OUT_ATTR = "held_out"
BASELINE_ATTR = "baseline_val_loss"

# What trials train on and validate on: the probe's type too (lrfind.data.held_out_images), so a
# study hands its own split to the probe it runs.
StudyHeldOut = HeldOutImages


def ensure_held_out(study, cfg, dataset: Dataset, scan_folder: Callable[[Path], Dataset]) -> StudyHeldOut:
    """The study's recorded split, else a new one recorded now. `scan_folder(DIR)` scans a
    --validation-dir with the study's dataset settings."""
    stored = study.user_attrs.get(HELD_OUT_ATTR)
    if stored is None and BASELINE_ATTR in study.user_attrs:
        return StudyHeldOut(dataset, (), "none", (
            f"study {cfg.name} began before held-out images: its trials go on validating on their training images; "
            "start a new study (--name) to validate on held-out ones",))
    if stored is None:
        stored = _new_record(cfg, dataset, scan_folder)
        study.set_user_attr(HELD_OUT_ATTR, stored)
    else:
        _check_same_options(cfg, stored)
    return _from_record(cfg, dataset, stored, scan_folder)


def _new_record(cfg, dataset: Dataset, scan_folder) -> dict:
    return choose_held_out(dataset, fraction=cfg.validation_split, min_images=cfg.validation_min_images,
                           seed=cfg.seed, validation_dir=cfg.validation_dir, scan_folder=scan_folder)


def _check_same_options(cfg, stored: dict) -> None:
    """A resumed study keeps its split: options that would pick another one are refused, not ignored."""
    if stored["source"] == "dir" or cfg.validation_dir is not None:
        if stored.get("dir") != (str(cfg.validation_dir) if cfg.validation_dir is not None else None):
            raise LrfindError(f"study {cfg.name} validates on {stored.get('dir') or 'a split of its dataset'}; "
                              f"--validation-dir {cfg.validation_dir} would change it: pass the same options to "
                              "resume it, or start a new study with another --name")
        return
    given = {"--validation-split": cfg.validation_split, "--validation-min-images": cfg.validation_min_images,
             "--seed": cfg.seed}
    recorded = {"--validation-split": stored["fraction"], "--validation-min-images": stored["min_images"],
                "--seed": stored["seed"]}
    changed = [f"{k} {given[k]} (it was {recorded[k]})" for k in given if given[k] != recorded[k]]
    if changed:
        raise LrfindError(f"study {cfg.name} holds out images picked with other options: {', '.join(changed)}; "
                          "pass the same options to resume it, or start a new study with another --name")


def _from_record(cfg, dataset: Dataset, stored: dict, scan_folder) -> StudyHeldOut:
    return held_out_from_record(dataset, stored, scan_folder,
                                f"study {cfg.name}'s held-out images (user attribute {HELD_OUT_ATTR})")
