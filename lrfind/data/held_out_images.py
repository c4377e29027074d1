"""A run's held-out images, chosen from its options or read back from a record of them.

The study and the probe hold images out the same way (issue 17): a split of the dataset
(lrfind.data.holdout: `--validation-split`, `--validation-min-images`, seeded with `--seed`) or
the images of a separate kohya-layout folder (`--validation-dir`). `choose_held_out` makes the
record of that choice (a JSON-ready dict the study keeps in its user attributes and the probe in
probe.json's `held_out` part); `held_out_from_record` turns a record back into what to train on
and what to validate on, so every run that reads the same record holds out the same files.
No torch; `scan_folder` (the caller's dataset scan) is the only disk access besides resolving
paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from lrfind.data.holdout import apply_split, holdout_split, relative_path
from lrfind.data.types import Dataset, ImageRecord
from lrfind.errors import DatasetError, LrfindError

ScanFolder = Callable[[Path], Dataset]  # scans a --validation-dir with the run's dataset settings


@dataclass(frozen=True)
class HeldOutImages:
    """What a run trains on, what it validates on, and what the split could not do."""

    train_dataset: Dataset  # the dataset without the held-out images (all of it when none are)
    records: tuple[ImageRecord, ...]  # the held-out images; () = validate on the training images
    source: str  # "split", "dir" or "none"
    warnings: tuple[str, ...] = ()
    record: dict = field(default_factory=dict)  # choose_held_out's record of the choice ({} when none was made)

    @property
    def note(self) -> str:
        """One line: what the run validates on."""
        if not self.records:
            return "validation on the training images (no image held out)"
        where = "from --validation-dir" if self.source == "dir" else "split off the dataset, never trained on"
        return f"validation on {len(self.records)} held-out image(s) {where}"

    @property
    def images(self) -> tuple[str, ...]:
        """The held-out paths as recorded (relative to the dataset, or to the --validation-dir)."""
        return tuple(self.record.get("images") or ())


def choose_held_out(dataset: Dataset, *, fraction: float, min_images: int, seed: int,
                    validation_dir: Optional[Path], scan_folder: ScanFolder) -> dict:
    """The record of a new choice: {"source": "split"|"none", "fraction", "min_images", "seed",
    "images", "warnings"} for a split, {"source": "dir", "dir", "images", "warnings"} for a folder."""
    if validation_dir is not None:
        try:
            folder = scan_folder(validation_dir)
        except DatasetError as err:  # its message says "dataset folder": name the option instead
            raise DatasetError(f"--validation-dir {validation_dir}: {err}") from None
        check_apart(dataset, folder, validation_dir)
        images = [relative_path(r, folder.root) for r in folder.train_images]
        return {"source": "dir", "dir": str(validation_dir), "images": images, "warnings": []}
    split = holdout_split(dataset, fraction, min_images, seed)
    return {"source": "split" if split.held_out else "none", "fraction": fraction, "min_images": min_images,
            "seed": seed, "images": list(split.held_out), "warnings": list(split.warnings)}


def held_out_from_record(dataset: Dataset, stored: dict, scan_folder: ScanFolder, source: str) -> HeldOutImages:
    """The images `stored` (choose_held_out's record) holds out; `source` names the record in errors
    (e.g. "study NAME's held-out images")."""
    warnings = tuple(stored.get("warnings") or ())
    if stored["source"] == "dir":
        folder = scan_folder(Path(stored["dir"]))
        by_path = {relative_path(r, folder.root): r for r in folder.train_images}
        missing = [p for p in stored["images"] if p not in by_path]
        if missing:
            raise LrfindError(f"{source}: {missing[0]} is no longer in --validation-dir {stored['dir']}: restore it, "
                              "or start a new study (--name)")
        return HeldOutImages(dataset, tuple(by_path[p] for p in stored["images"]), "dir", warnings, dict(stored))
    train, records = apply_split(dataset, stored["images"], source)
    return HeldOutImages(train, records, stored["source"], warnings, dict(stored))


def check_apart(dataset: Dataset, folder: Dataset, given: Path) -> None:
    """Images both in the dataset and in --validation-dir would be trained on and validated on."""
    trained = {Path(r.path).resolve() for r in dataset.train_images}
    shared = [r.path for r in folder.train_images if Path(r.path).resolve() in trained]
    if shared:
        raise LrfindError(f"--validation-dir {given}: {shared[0]} is also a training image of {dataset.root}; "
                          "give a folder of other images of the same concepts")
