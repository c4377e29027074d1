"""Step math as kohya counts it: repeats, reg images, per-bucket batches, the formula line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrfind.data.steps import (
    dataset_steps_per_epoch,
    epoch_repeats,
    regularisation_repeats,
    samples_per_bucket,
    steps_formula,
    steps_in_buckets,
    total_steps,
)
from lrfind.data.types import Concept, Dataset, ImageRecord


@pytest.mark.parametrize(
    "train_samples, folder_repeats, used",
    [
        (10, [1, 1, 1], [4, 3, 3]),  # cycles adding one repeat at a time until 10
        (10, [5, 5, 5], [5, 5, 0]),  # the first pass already reaches 10: the last image is unused
        (10, [20], [20]),  # first pass overshoots: kept, as kohya does
        (7, [2, 3], [3, 4]),
        (0, [3], [0]),
        (5, [], []),
    ],
)
def test_regularisation_repeats(train_samples, folder_repeats, used):
    assert regularisation_repeats(train_samples, folder_repeats) == used


@pytest.mark.parametrize(
    "counts, batch_size, steps",
    [
        ({(512, 512): 3, (640, 384): 3}, 2, 4),  # 2 + 2, not ceil(6 / 2) = 3
        ({(512, 512): 60, (640, 384): 10}, 1, 70),
        ({(512, 512): 60, (640, 384): 10}, 4, 15 + 3),
        ([0, 5], 2, 3),
        ([], 3, 0),
    ],
)
def test_steps_in_buckets(counts, batch_size, steps):
    assert steps_in_buckets(counts, batch_size) == steps


def test_steps_in_buckets_rejects_batch_zero():
    with pytest.raises(ValueError):
        steps_in_buckets([4], 0)


def test_total_steps():
    assert total_steps(70, 10) == 700


@pytest.mark.parametrize(
    "groups, epochs, batch, steps, reg, line",
    [
        ([(6, 10)], 1, 1, 60, 0, "6 images × 10 repeats × 1 epoch / batch 1 = 60 steps"),
        ([(1, 1)], 3, 1, 3, 0, "1 image × 1 repeat × 3 epochs / batch 1 = 3 steps"),
        ([(6, 10), (2, 5)], 2, 2, 70, 0,
         "(6 images × 10 repeats + 2 images × 5 repeats = 70) × 2 epochs / batch 2 = 70 steps"),
        ([(3, 2)], 1, 4, 3, 0,
         "3 images × 2 repeats × 1 epoch / batch 4 = 3 steps (not 2: batches are formed within each bucket)"),
        ([(5, 2)], 1, 1, 20, 10, "(5 images × 2 repeats + 10 reg) × 1 epoch / batch 1 = 20 steps"),
    ],
)
def test_steps_formula(groups, epochs, batch, steps, reg, line):
    assert steps_formula(groups, epochs, batch, steps, reg) == line


def _record(name: str, bucket, repeats: int, is_reg: bool = False) -> ImageRecord:
    return ImageRecord(
        path=Path(name), caption="x", caption_path=None, concept="c", repeats=repeats, is_reg=is_reg,
        size=bucket, bucket=bucket, resized=bucket,
    )


def test_dataset_steps_with_buckets_and_reg_images():
    square, wide = (512, 512), (640, 384)
    train = Concept(Path("10_a"), "a", 10, False, (_record("a1", square, 10), _record("a2", wide, 10)))
    reg = Concept(Path("1_r"), "r", 1, True, tuple(_record(f"r{i}", square, 1, True) for i in range(3)))
    dataset = Dataset(Path("d"), (train,), (reg,))
    used = dict((r.path.name, n) for r, n in epoch_repeats(dataset))
    assert used == {"a1": 10, "a2": 10, "r0": 7, "r1": 7, "r2": 6}  # reg fills up to 20 samples
    assert samples_per_bucket(epoch_repeats(dataset)) == {square: 30, wide: 10}
    assert dataset_steps_per_epoch(dataset, 1) == 40
    assert dataset_steps_per_epoch(dataset, 4) == 8 + 3
