"""Held-out images: a deterministic, stratified split of a kohya dataset. Pure: no torch, no I/O.

A study must judge a LoRA on pictures it never trained on, or every score rewards memorising the
training set (issue 17). `holdout_split` picks, per concept folder, round(fraction x images) of
its images (at least one, never all) for validation, by a shuffle seeded with the seed and the
folder's name: the same dataset and settings always hold out the same files, whatever the order
folders are listed in, and adding a concept does not change another concept's pick. A concept
with fewer than `min_images` images keeps all of them for training (holding one of three out
would cost a third of its data) and says so in the split's warnings.

The split is a list of paths relative to the dataset folder (POSIX separators), so a study can
record it and a resumed run or another worker, on any machine, reads the same one back
(`apply_split`) instead of recomputing it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Sequence

from lrfind.data.types import Concept, Dataset, ImageRecord
from lrfind.errors import DatasetError

# A fifth of each concept: enough images to average over, most of them left to train on.
DEFAULT_VALIDATION_SPLIT = 0.2
# Fewer images than this in a concept: none held out (one of 3 would be a third of its data).
MIN_IMAGES_TO_HOLD_OUT = 4


@dataclass(frozen=True)
class HoldoutSplit:
    """Which images are held out, relative to the dataset root, and what the split could not do."""

    held_out: tuple[str, ...]  # POSIX paths relative to the dataset root, in dataset order
    warnings: tuple[str, ...] = ()  # concepts left without held-out images, and what that loses


def relative_path(record: ImageRecord, root: Path) -> str:
    """The record's path relative to `root`, with '/' separators (the form a study records)."""
    return PurePosixPath(Path(record.path).relative_to(root)).as_posix()


def held_out_count(n_images: int, fraction: float, min_images: int) -> int:
    """How many of a concept's `n_images` are held out: 0 below `min_images`, else at least 1, never all."""
    if fraction <= 0 or n_images < max(2, min_images):
        return 0
    return min(n_images - 1, max(1, round(n_images * fraction)))


def _concept_pick(concept: Concept, root: Path, fraction: float, min_images: int, seed: int) -> list[str]:
    paths = sorted(relative_path(r, root) for r in concept.images)
    count = held_out_count(len(paths), fraction, min_images)
    # str seeds hash with SHA-512 in random.Random: stable across runs, machines and Python versions
    random.Random(f"{seed}:{concept.folder.name}").shuffle(paths)
    return paths[:count]


def holdout_split(dataset: Dataset, fraction: float = DEFAULT_VALIDATION_SPLIT,
                  min_images: int = MIN_IMAGES_TO_HOLD_OUT, seed: int = 0) -> HoldoutSplit:
    """The held-out images of `dataset`'s training concepts (regularisation images are never held out)."""
    picked: set[str] = set()
    warnings = []
    for concept in dataset.concepts:
        pick = _concept_pick(concept, dataset.root, fraction, min_images, seed)
        picked.update(pick)
        if not pick and fraction > 0:
            warnings.append(f"concept folder {concept.folder.name} has {len(concept.images)} image(s), fewer than "
                            f"{min_images}: none held out, so the validation loss does not measure how it "
                            "generalises; add images to it or lower --validation-min-images")
    order = [relative_path(r, dataset.root) for r in dataset.train_images]
    held_out = tuple(p for p in order if p in picked)
    if not held_out:
        warnings.append(f"dataset {dataset.root}: no image held out (validation split {fraction:g}); trials "
                        "validate on their training images, which rewards memorising them over generalising")
    return HoldoutSplit(held_out, tuple(warnings))


def apply_split(dataset: Dataset, held_out: Sequence[str], source: str) -> tuple[Dataset, tuple[ImageRecord, ...]]:
    """(the dataset without the held-out images, the held-out records in dataset order).

    `source` names where the list came from (e.g. "study NAME's held-out split") for the error
    raised when it names an image the dataset lacks, or leaves a concept without training images.
    """
    wanted = set(held_out)
    found = {relative_path(r, dataset.root): r for r in dataset.train_images}
    missing = sorted(wanted - set(found))
    if missing:
        raise DatasetError(f"{source} holds out {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                           + f", not in dataset {dataset.root}: restore the images, or start a new study (--name) "
                             "for the changed dataset")
    concepts = []
    for concept in dataset.concepts:
        kept = tuple(r for r in concept.images if relative_path(r, dataset.root) not in wanted)
        if not kept:
            raise DatasetError(f"{source} holds out every image of {concept.folder}: add images to it, or start a "
                               "new study (--name) for the changed dataset")
        concepts.append(replace(concept, images=kept))
    records = tuple(r for r in dataset.train_images if relative_path(r, dataset.root) in wanted)
    return replace(dataset, concepts=tuple(concepts)), records
