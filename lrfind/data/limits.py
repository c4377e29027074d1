"""Sane bounds on repeats and steps, checked before any work. Pure: no torch, no I/O.

A folder named `10000000_cat` is a typo away from `10_cat`; training it would list every
image-repeat of an epoch (memory grows with repeats) and never end. Above these limits lrfind
refuses with one line (exit 2); `lrfind dataset check` reports the same problems as warnings.

- MAX_REPEATS: repeats per concept folder. kohya recipes use 1-100; 10,000 leaves room for a
  single-image concept trained in few epochs and is still far from a typo's millions.
- MAX_TOTAL_STEPS: optimizer steps of one run. A LoRA trains in thousands of steps; a million is
  weeks on one GPU.
- VIEWS_PER_IMAGE_WARNING: a run that shows each training image more often than this (steps x
  batch / images) is far longer than LoRA datasets need (recipes: about 100-1,000); a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lrfind.data.types import Dataset
from lrfind.errors import ConfigError, DatasetError

MAX_REPEATS = 10_000
MAX_TOTAL_STEPS = 1_000_000
VIEWS_PER_IMAGE_WARNING = 2_000


def repeat_problems(dataset: Dataset) -> list[tuple[Path, str, str]]:
    """(folder, problem, fix) per concept folder whose repeats are above MAX_REPEATS."""
    return [
        (concept.folder, f"{concept.repeats:,} repeats is above lrfind's limit of {MAX_REPEATS:,} per folder (a typo?)",
         f"rename the folder with fewer repeats, e.g. 10_{concept.name}")
        for concept in dataset.concepts + dataset.reg_concepts
        if concept.repeats > MAX_REPEATS
    ]


def steps_problem(total_steps: int) -> Optional[tuple[str, str]]:
    """(problem, fix) when a run's steps are above MAX_TOTAL_STEPS."""
    if total_steps <= MAX_TOTAL_STEPS:
        return None
    return (f"the run would train {total_steps:,} steps, above lrfind's limit of {MAX_TOTAL_STEPS:,}",
            "lower max_train_epochs / max_train_steps or the folders' repeats (the N of N_name)")


def long_run_warning(total_steps: int, batch_size: int, train_images: int) -> Optional[str]:
    """A warning when each training image would be seen far more often than LoRAs need."""
    if train_images < 1:
        return None
    views = total_steps * batch_size // train_images
    if views <= VIEWS_PER_IMAGE_WARNING:
        return None
    return (f"this run shows each of the {train_images:,} training images about {views:,} times "
            f"({total_steps:,} steps x batch {batch_size}); LoRAs usually need 100-1,000: check the repeats "
            "(the N of N_name) and the epochs")


def check_repeats(dataset: Dataset) -> None:
    """DatasetError naming the first folder above MAX_REPEATS: before anything lists its repeats."""
    problems = repeat_problems(dataset)
    if problems:
        folder, problem, fix = problems[0]
        raise DatasetError(f"{folder}: {problem}; {fix}")


def check_steps(total_steps: int) -> None:
    problem = steps_problem(total_steps)
    if problem:
        raise ConfigError("; ".join(problem))
