"""Validation prompts for trial samples: each concept's trigger in a fixed set of varied scenes.

The same dataset always gives the same prompts and seeds, so samples of different trials (and of
resumed studies) are comparable image for image. Varied scenes show whether a LoRA still follows
the prompt (CLIP-T) or has overfitted to its training pictures. Prompts are plain text: whoever
renders them (the HTML report) escapes them.
"""

from __future__ import annotations

from collections import Counter

from lrfind.data.types import Concept, Dataset
from lrfind.errors import DatasetError

VALIDATION_SCENES = (
    "{trigger}, portrait, close-up",
    "{trigger} in a park, daylight",
    "{trigger} on a wooden table, studio lighting",
    "{trigger}, full body, city street at night",
    "{trigger} at the beach, sunset",
    "{trigger}, watercolor painting",
)
FIRST_SEED = 1234  # seed of prompt i is FIRST_SEED + i


def first_tag(caption: str) -> str:
    """The first comma-separated tag of a caption ("" for an empty caption)."""
    return caption.split(",", 1)[0].strip()


def concept_trigger(concept: Concept) -> str:
    """The words a LoRA of this concept is prompted with.

    kohya trains on the captions and uses the folder's class tokens only for images without a
    caption file (ImageRecord.caption is then the folder name), so the trigger is the first tag
    most of the concept's captions start with, and the folder name when no caption has one.
    Ties go to the alphabetically first tag, so the choice never depends on file order.
    """
    counts = Counter(tag for tag in (first_tag(record.caption) for record in concept.images) if tag)
    if not counts:
        return concept.name.strip()
    best = max(counts.values())
    return min(tag for tag, count in counts.items() if count == best)


def dataset_triggers(dataset: Dataset) -> list[str]:
    """One trigger per training concept (not regularisation), in folder order, duplicates once."""
    triggers: list[str] = []
    for concept in dataset.concepts:
        trigger = concept_trigger(concept)
        if trigger and trigger not in triggers:
            triggers.append(trigger)
    return triggers


def validation_prompts(dataset: Dataset, n: int = 4) -> list[tuple[str, int]]:
    """`n` (prompt, seed) pairs: triggers in turn, each prompt in the next scene of the list.

    With two concepts and n=4: (A, scene 0), (B, scene 1), (A, scene 2), (B, scene 3).
    """
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one validation prompt")
    triggers = dataset_triggers(dataset)
    if not triggers:
        raise DatasetError(f"dataset {dataset.root} has no training concept (N_name folder) to write "
                           "validation prompts for; add one")
    return [
        (VALIDATION_SCENES[i % len(VALIDATION_SCENES)].format(trigger=triggers[i % len(triggers)]),
         FIRST_SEED + i)
        for i in range(n)
    ]
