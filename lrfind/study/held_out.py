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

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lrfind.data.holdout import apply_split, holdout_split, relative_path
from lrfind.data.types import Dataset, ImageRecord
from lrfind.errors import DatasetError, LrfindError

HELD_OUT_ATTR = "held_out"
BASELINE_ATTR = "baseline_val_loss"


@dataclass(frozen=True)
class StudyHeldOut:
    """What trials train on, what they validate on, and what the split could not do."""

    train_dataset: Dataset  # the dataset without the held-out images (all of it when none are)
    records: tuple[ImageRecord, ...]  # the held-out images; () = validate on the training images
    source: str  # "split", "dir" or "none"
    warnings: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        """One line for the study's start: what the trials validate on."""
        if not self.records:
            return "validation on the training images (no image held out)"
        where = "from --validation-dir" if self.source == "dir" else "split off the dataset, never trained on"
        return f"validation on {len(self.records)} held-out image(s) {where}"


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
    if cfg.validation_dir is not None:
        try:
            folder = scan_folder(cfg.validation_dir)
        except DatasetError as err:  # its message says "dataset folder": name the option instead
            raise DatasetError(f"--validation-dir {cfg.validation_dir}: {err}") from None
        _check_apart(dataset, folder, cfg.validation_dir)
        images = [relative_path(r, folder.root) for r in folder.train_images]
        return {"source": "dir", "dir": str(cfg.validation_dir), "images": images, "warnings": []}
    split = holdout_split(dataset, cfg.validation_split, cfg.validation_min_images, cfg.seed)
    return {"source": "split" if split.held_out else "none", "fraction": cfg.validation_split,
            "min_images": cfg.validation_min_images, "seed": cfg.seed, "images": list(split.held_out),
            "warnings": list(split.warnings)}


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
    warnings = tuple(stored.get("warnings") or ())
    source = f"study {cfg.name}'s held-out images (user attribute {HELD_OUT_ATTR})"
    if stored["source"] == "dir":
        folder = scan_folder(Path(stored["dir"]))
        by_path = {relative_path(r, folder.root): r for r in folder.train_images}
        missing = [p for p in stored["images"] if p not in by_path]
        if missing:
            raise LrfindError(f"{source}: {missing[0]} is no longer in --validation-dir {stored['dir']}: restore it, "
                              "or start a new study (--name)")
        return StudyHeldOut(dataset, tuple(by_path[p] for p in stored["images"]), "dir", warnings)
    train, records = apply_split(dataset, stored["images"], source)
    return StudyHeldOut(train, records, stored["source"], warnings)


def _check_apart(dataset: Dataset, folder: Dataset, given: Path) -> None:
    """Images both in the dataset and in --validation-dir would be trained on and validated on."""
    trained = {Path(r.path).resolve() for r in dataset.train_images}
    shared = [r.path for r in folder.train_images if Path(r.path).resolve() in trained]
    if shared:
        raise LrfindError(f"--validation-dir {given}: {shared[0]} is also a training image of {dataset.root}; "
                          "give a folder of other images of the same concepts")
