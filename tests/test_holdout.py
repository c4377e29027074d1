"""The held-out split (lrfind.data.holdout): deterministic, stratified per concept, never all of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrfind.data.holdout import apply_split, held_out_count, holdout_split
from lrfind.data.types import Concept, Dataset, ImageRecord
from lrfind.errors import DatasetError

ROOT = Path("/data/set")


def _concept(folder: str, n: int, is_reg: bool = False) -> Concept:
    repeats, name = folder.split("_", 1)
    images = tuple(ImageRecord(path=ROOT / folder / f"img{i:02d}.png", caption=name, caption_path=None, concept=name,
                               repeats=int(repeats), is_reg=is_reg, size=(64, 64), bucket=(64, 64), resized=(64, 64))
                   for i in range(n))
    return Concept(folder=ROOT / folder, name=name, repeats=int(repeats), is_reg=is_reg, images=images)


def _dataset(*sizes: tuple[str, int], reg: int = 0) -> Dataset:
    regs = (_concept("1_person", reg, is_reg=True),) if reg else ()
    return Dataset(root=ROOT, concepts=tuple(_concept(f, n) for f, n in sizes), reg_concepts=regs)


@pytest.mark.parametrize("n, fraction, minimum, expected", [
    (3, 0.2, 4, 0),  # too few: none
    (4, 0.2, 4, 1),  # round(0.8) = 1
    (6, 0.2, 4, 1),
    (10, 0.2, 4, 2),
    (12, 0.25, 4, 3),
    (5, 0.9, 4, 4),  # never all: one image stays to train on
    (20, 0.0, 4, 0),  # fraction 0: the split is off
    (4, 0.01, 4, 1),  # at least one once a concept is big enough
])
def test_held_out_count(n, fraction, minimum, expected):
    assert held_out_count(n, fraction, minimum) == expected


def test_split_is_stratified_per_concept_and_warns_about_small_ones():
    dataset = _dataset(("10_cat", 10), ("5_cup", 5), ("3_mug", 3), reg=6)
    split = holdout_split(dataset, 0.2, 4, seed=0)
    by_folder = {}
    for path in split.held_out:
        by_folder.setdefault(path.split("/")[0], []).append(path)
    assert {k: len(v) for k, v in by_folder.items()} == {"10_cat": 2, "5_cup": 1}
    assert not any(p.startswith("1_person") for p in split.held_out)  # regularisation images never
    assert len(split.warnings) == 1 and "3_mug" in split.warnings[0] and "fewer than 4" in split.warnings[0]


def test_split_is_deterministic_and_independent_of_folder_order():
    a = _dataset(("10_cat", 10), ("5_cup", 8))
    b = _dataset(("5_cup", 8), ("10_cat", 10))
    first = holdout_split(a, 0.25, 4, seed=7).held_out
    assert holdout_split(a, 0.25, 4, seed=7).held_out == first
    assert set(holdout_split(b, 0.25, 4, seed=7).held_out) == set(first)
    # another seed picks other images (for these sizes at least one concept's pick differs)
    assert set(holdout_split(a, 0.25, 4, seed=8).held_out) != set(first)
    # adding a concept leaves the others' picks alone
    c = _dataset(("10_cat", 10), ("5_cup", 8), ("2_dog", 6))
    assert set(first) <= set(holdout_split(c, 0.25, 4, seed=7).held_out)


def test_no_image_held_out_says_what_is_lost():
    split = holdout_split(_dataset(("10_cat", 3)), 0.2, 4)
    assert split.held_out == ()
    assert any("validate on their training images" in w for w in split.warnings)


def test_apply_split_separates_train_from_held_out():
    dataset = _dataset(("10_cat", 10), ("5_cup", 5), reg=2)
    split = holdout_split(dataset, 0.2, 4)
    train, held = apply_split(dataset, split.held_out, "test")
    held_paths = {r.path for r in held}
    train_paths = {r.path for r in train.train_images}
    assert len(held) == 3 and not held_paths & train_paths
    assert held_paths | train_paths == {r.path for r in dataset.train_images}
    assert train.reg_images == dataset.reg_images
    assert [c.folder for c in train.concepts] == [c.folder for c in dataset.concepts]


def test_apply_split_refuses_a_list_that_does_not_fit_the_dataset():
    dataset = _dataset(("10_cat", 4))
    with pytest.raises(DatasetError, match="10_cat/gone.png, not in dataset"):
        apply_split(dataset, ["10_cat/gone.png"], "study s's held-out images")
    every = [f"10_cat/img{i:02d}.png" for i in range(4)]
    with pytest.raises(DatasetError, match="holds out every image"):
        apply_split(dataset, every, "study s's held-out images")
