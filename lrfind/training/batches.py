"""Which images go into which batch, epoch by epoch, as kohya sd-scripts does it.

Each image appears `repeats` times per epoch; regularisation images are repeated until they
match the number of training image-repeats (kohya's rule, lrfind.data.steps); batches are formed
within one aspect-ratio bucket; bucket contents and batch order are shuffled with a seed per
epoch, so a run is reproducible. Captions are shuffled per use with kohya's keep_tokens rule.
Pure Python: no torch.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from lrfind.data.steps import regularisation_repeats, steps_in_buckets
from lrfind.data.types import ImageRecord


@dataclass(frozen=True)
class TrainItem:
    record: ImageRecord
    loss_weight: float  # 1.0, or prior_loss_weight for regularisation images


def epoch_items(
    train: Sequence[ImageRecord], reg: Sequence[ImageRecord], prior_loss_weight: float
) -> list[TrainItem]:
    """All image-repeats of one epoch, unshuffled: one shared item per image, listed once per repeat.

    Repeats are bounded (lrfind.data.limits.MAX_REPEATS) before this is called: the list holds
    one reference per image-repeat.
    """
    items = [item for r in train for item in [TrainItem(r, 1.0)] * r.repeats]
    reg_used = regularisation_repeats(len(items), [r.repeats for r in reg])
    items += [item for r, n in zip(reg, reg_used) for item in [TrainItem(r, prior_loss_weight)] * n]
    return items


def epoch_batches(items: Sequence[TrainItem], batch_size: int, seed: int, epoch: int) -> list[list[TrainItem]]:
    """Batches of one epoch: grouped by bucket, shuffled reproducibly for (seed, epoch)."""
    rng = random.Random(seed * 100_003 + epoch)
    by_bucket: dict[tuple[int, int], list[TrainItem]] = {}
    for item in items:
        by_bucket.setdefault(item.record.bucket, []).append(item)
    batches = []
    for bucket in sorted(by_bucket):
        bucket_items = by_bucket[bucket][:]
        rng.shuffle(bucket_items)
        batches += [bucket_items[i : i + batch_size] for i in range(0, len(bucket_items), batch_size)]
    rng.shuffle(batches)
    return batches


def batches_per_epoch(items: Sequence[TrainItem], batch_size: int) -> int:
    """Counted, not built: batches never mix buckets (lrfind.data.steps.steps_in_buckets)."""
    return steps_in_buckets(Counter(item.record.bucket for item in items), batch_size)


def process_caption(caption: str, shuffle: bool, keep_tokens: int, rng: random.Random) -> str:
    """kohya's caption shuffling: comma-separated tags, the first `keep_tokens` stay in place."""
    if not shuffle:
        return caption
    tags = [t.strip() for t in caption.split(",") if t.strip()]
    fixed, flexible = tags[:keep_tokens], tags[keep_tokens:]
    rng.shuffle(flexible)
    return ", ".join(fixed + flexible)
