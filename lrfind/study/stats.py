"""What the study's step math needs to know about a dataset, as plain data. Pure: no torch, no I/O.

A study changes repeats and epochs per trial, so it needs the step count for repeats other than the
folders' own. `DatasetStats` keeps just enough of a scanned `Dataset` for that (images per bucket
per concept, the reg images in order) and round-trips through JSON, so that recommendation.json
and `lrfind report` can redo the math without rescanning. The counting itself is
`lrfind.data.steps` (kohya's rules), not repeated here.

Repeats in a study: the searched value is the repeats of the concept with the MOST folder repeats;
every other concept keeps its ratio to it (rounded, at least 1). For a one-concept dataset this is
simply its repeats; for several concepts it keeps the balance the user set with the folder names.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from lrfind.data.steps import regularisation_repeats, steps_formula, steps_in_buckets
from lrfind.data.types import Dataset

Size = tuple[int, int]


@dataclass(frozen=True)
class ConceptStats:
    folder: str  # the folder's name as found, e.g. "10_mychar"
    name: str  # without the repeats prefix, e.g. "mychar"
    repeats: int  # the folder's N
    images_per_bucket: tuple[tuple[Size, int], ...]  # ((width, height), images), sorted

    @property
    def images(self) -> int:
        return sum(n for _, n in self.images_per_bucket)


@dataclass(frozen=True)
class StepMath:
    """The steps of a run and the human line that explains them."""

    concept_repeats: tuple[int, ...]  # per training concept, in dataset order
    epochs: int
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    text: str  # e.g. "20 images × 10 repeats × 8 epochs / batch 2 = 800 steps"


@dataclass(frozen=True)
class DatasetStats:
    name: str
    concepts: tuple[ConceptStats, ...]
    reg_images: tuple[tuple[int, Size], ...] = ()  # (folder repeats, bucket) per reg image, in order

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> "DatasetStats":
        """Scan the dataset at the study's resolution first: buckets depend on it."""
        concepts = tuple(
            ConceptStats(
                folder=c.folder.name,
                name=c.name,
                repeats=c.repeats,
                images_per_bucket=tuple(sorted(Counter(r.bucket for r in c.images).items())),
            )
            for c in dataset.concepts
        )
        reg = tuple((r.repeats, tuple(r.bucket)) for r in dataset.reg_images)
        return cls(name=dataset.name, concepts=concepts, reg_images=reg)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "concepts": [
                {"folder": c.folder, "name": c.name, "repeats": c.repeats,
                 "images_per_bucket": [[list(b), n] for b, n in c.images_per_bucket]}
                for c in self.concepts
            ],
            "reg_images": [[r, list(b)] for r, b in self.reg_images],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetStats":
        concepts = tuple(
            ConceptStats(
                folder=c["folder"], name=c["name"], repeats=int(c["repeats"]),
                images_per_bucket=tuple((tuple(b), int(n)) for b, n in c["images_per_bucket"]),
            )
            for c in data["concepts"]
        )
        reg = tuple((int(r), tuple(b)) for r, b in data.get("reg_images", ()))
        return cls(name=data["name"], concepts=concepts, reg_images=reg)

    @property
    def images(self) -> int:
        return sum(c.images for c in self.concepts)

    def concept_repeats(self, repeats: int | None) -> tuple[int, ...]:
        """Per-concept repeats when the most-repeated concept gets `repeats` (None: the folders')."""
        folder = tuple(c.repeats for c in self.concepts)
        if repeats is None or not folder:
            return folder
        top = max(folder)
        # half rounds up (Python's round() would send 0.5 to 0 and 2.5 to 2)
        return tuple(max(1, math.floor(repeats * r / top + 0.5)) for r in folder)

    def step_math(self, concept_repeats: Sequence[int], epochs: int, batch_size: int) -> StepMath:
        """kohya's step count for these repeats, with the explaining line."""
        samples: Counter[Size] = Counter()
        for concept, repeats in zip(self.concepts, concept_repeats, strict=True):
            for bucket, images in concept.images_per_bucket:
                samples[bucket] += images * repeats
        train_samples = sum(samples.values())
        reg_used = regularisation_repeats(train_samples, [r for r, _ in self.reg_images])
        for (_, bucket), used in zip(self.reg_images, reg_used):
            samples[bucket] += used
        per_epoch = steps_in_buckets(samples, batch_size)
        total = per_epoch * epochs
        groups = [(c.images, r) for c, r in zip(self.concepts, concept_repeats)]
        text = steps_formula(groups, epochs, batch_size, total, reg_samples=sum(reg_used))
        return StepMath(tuple(concept_repeats), epochs, batch_size, per_epoch, total, text)
