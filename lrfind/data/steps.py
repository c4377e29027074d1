"""Step math as kohya sd-scripts counts it. Pure: no torch, no I/O.

- Each training image appears `repeats` times per epoch (the `N` of its `N_name` folder).
- Regularisation images: kohya's DreamBoothDataset registers each reg image with its folder's
  repeats, in order, until the reg image-repeats reach the number of training image-repeats; if
  they fall short it goes round again adding ONE repeat per image until they match. So reg
  image-repeats per epoch = training image-repeats (exactly, or overshooting by less than one
  folder's repeats on the first pass), some reg images may be used 0 times, and reg repeats are
  not simply `N` from the folder name. We count that way too.
- Batches never mix buckets: steps per epoch = sum over buckets of ceil(samples / batch_size).
  Training and reg images share buckets (one dataset in kohya).
- Total steps = steps per epoch x epochs (gradient accumulation is not counted here).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping, Sequence

from lrfind.data.types import Dataset, ImageRecord

Size = tuple[int, int]


def regularisation_repeats(train_samples: int, reg_folder_repeats: Sequence[int]) -> list[int]:
    """How often each reg image is used per epoch (kohya's rule, see the module doc).

    `train_samples` is the number of training image-repeats per epoch; `reg_folder_repeats` has one
    entry per reg image (its folder's N), in dataset order.
    """
    used = [0] * len(reg_folder_repeats)
    if not reg_folder_repeats or train_samples <= 0:
        return used
    total = 0
    for index, folder_repeats in enumerate(reg_folder_repeats):  # the first pass: each folder's N
        used[index] = folder_repeats
        total += folder_repeats
        if total >= train_samples:
            return used
    # then rounds of one repeat per image, in order, until the total is reached: arithmetic, so
    # huge repeats cost no time
    rounds, extra = divmod(train_samples - total, len(used))
    return [n + rounds + (1 if index < extra else 0) for index, n in enumerate(used)]


def steps_in_buckets(samples_per_bucket: Mapping[Size, int] | Iterable[int], batch_size: int) -> int:
    """Batches per epoch when each bucket is batched on its own: sum of ceil(n / batch_size)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    counts = samples_per_bucket.values() if isinstance(samples_per_bucket, Mapping) else samples_per_bucket
    return sum(-(-n // batch_size) for n in counts if n > 0)  # integer ceil: exact for any n


def total_steps(steps_per_epoch: int, epochs: int) -> int:
    return steps_per_epoch * epochs


def epoch_repeats(dataset: Dataset) -> list[tuple[ImageRecord, int]]:
    """Every image with the number of times it is used per epoch (reg images by kohya's rule)."""
    train = [(record, record.repeats) for record in dataset.train_images]
    train_samples = sum(n for _, n in train)
    reg_records = dataset.reg_images
    reg_used = regularisation_repeats(train_samples, [r.repeats for r in reg_records])
    return train + list(zip(reg_records, reg_used))


def samples_per_bucket(used: Iterable[tuple[ImageRecord, int]]) -> dict[Size, int]:
    """Image-repeats per bucket per epoch, sorted by bucket."""
    counts: Counter[Size] = Counter()
    for record, times in used:
        counts[record.bucket] += times
    return {bucket: counts[bucket] for bucket in sorted(counts) if counts[bucket] > 0}


def dataset_steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
    """Steps per epoch of the whole dataset (training + regularisation images), as kohya counts."""
    return steps_in_buckets(samples_per_bucket(epoch_repeats(dataset)), batch_size)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def steps_formula(
    groups: Sequence[tuple[int, int]], epochs: int, batch_size: int, steps: int, reg_samples: int = 0
) -> str:
    """The human "images x repeats x epochs / batch = steps" line.

    `groups` is (images, repeats) per training folder; `steps` the real total (bucket remainders
    and reg images can make it more than the plain division, which the line then says).
    """
    terms = [f"{_plural(n, 'image')} × {_plural(r, 'repeat')}" for n, r in groups if n]
    samples = sum(n * r for n, r in groups)
    per_epoch = " + ".join(terms) if terms else "0 images"
    if len(terms) > 1:
        per_epoch = f"({per_epoch} = {samples})"
    if reg_samples:
        per_epoch = f"({per_epoch} + {reg_samples} reg)"
    line = f"{per_epoch} × {_plural(epochs, 'epoch')} / batch {batch_size} = {_plural(steps, 'step')}"
    plain = -(-(samples + reg_samples) * epochs // batch_size)
    if steps != plain:
        line += f" (not {plain}: batches are formed within each bucket)"
    return line
