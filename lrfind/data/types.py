"""Plain records describing a scanned kohya dataset. No torch, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ImageRecord:
    """One image of the dataset with its caption and target bucket.

    `bucket` is the (width, height) the image is trained at; `resized` the size it is scaled to
    (covering the bucket, aspect ratio kept) before the centre crop to `bucket`.
    """

    path: Path
    caption: str
    caption_path: Path | None  # None when the caption file is missing (caption = class tokens)
    concept: str  # the folder name without the `N_` prefix: class / trigger tokens
    repeats: int
    is_reg: bool
    size: tuple[int, int]  # original (width, height)
    bucket: tuple[int, int]  # (width, height), multiples of 64
    resized: tuple[int, int]  # (width, height) before the centre crop

    @property
    def upscale(self) -> float:
        """How much the image is enlarged (linearly) to cover its bucket; <= 1: not enlarged."""
        return max(self.resized[0] / self.size[0], self.resized[1] / self.size[1])


@dataclass(frozen=True)
class Concept:
    """One `N_name` folder."""

    folder: Path
    name: str
    repeats: int
    is_reg: bool
    images: tuple[ImageRecord, ...]

    @property
    def missing_captions(self) -> int:
        return sum(1 for r in self.images if r.caption_path is None)


@dataclass(frozen=True)
class Dataset:
    root: Path
    concepts: tuple[Concept, ...]
    reg_concepts: tuple[Concept, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def train_images(self) -> tuple[ImageRecord, ...]:
        return tuple(r for c in self.concepts for r in c.images)

    @property
    def reg_images(self) -> tuple[ImageRecord, ...]:
        return tuple(r for c in self.reg_concepts for r in c.images)

    @property
    def name(self) -> str:
        return self.root.resolve().name


def with_repeats(dataset: Dataset, repeats_by_folder: dict[str, int]) -> Dataset:
    """The same dataset with other repeats per concept folder (a study trial's `repeats`).

    `repeats_by_folder` maps a concept folder's name (e.g. "10_mychar") to its new repeats;
    folders not named keep theirs. Regularisation folders are never changed.
    """
    from dataclasses import replace

    def change(concept: Concept) -> Concept:
        n = repeats_by_folder.get(concept.folder.name, concept.repeats)
        return replace(concept, repeats=n, images=tuple(replace(r, repeats=n) for r in concept.images))

    return replace(dataset, concepts=tuple(change(c) for c in dataset.concepts))
