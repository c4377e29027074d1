"""Validation prompts: triggers from captions or folder names, varied scenes, fixed seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrfind.config import DatasetConfig
from lrfind.data.kohya import scan_dataset
from lrfind.data.types import Concept, Dataset, ImageRecord
from lrfind.errors import DatasetError
from lrfind.scoring.prompts import (
    FIRST_SEED,
    VALIDATION_SCENES,
    concept_trigger,
    dataset_triggers,
    validation_prompts,
)


def record(caption: str, concept: str, has_caption_file: bool = True) -> ImageRecord:
    return ImageRecord(path=Path(f"/d/{caption}.png"), caption=caption,
                       caption_path=Path("/d/x.txt") if has_caption_file else None, concept=concept,
                       repeats=1, is_reg=False, size=(64, 64), bucket=(64, 64), resized=(64, 64))


def concept(name: str, captions: list[str], is_reg: bool = False) -> Concept:
    return Concept(folder=Path(f"/d/1_{name}"), name=name, repeats=1, is_reg=is_reg,
                   images=tuple(record(c, name) for c in captions))


def test_example_dataset_prompts(example_dataset):
    dataset = scan_dataset(DatasetConfig(train_dir=example_dataset, resolution=64))
    prompts = validation_prompts(dataset, n=4)
    assert prompts == [
        ("lrfcat, portrait, close-up", FIRST_SEED),
        ("lrfcup in a park, daylight", FIRST_SEED + 1),
        ("lrfcat on a wooden table, studio lighting", FIRST_SEED + 2),
        ("lrfcup, full body, city street at night", FIRST_SEED + 3),
    ]
    # a second scan of the same folder gives the same prompts and seeds
    assert validation_prompts(scan_dataset(DatasetConfig(train_dir=example_dataset, resolution=64)), 4) == prompts


def test_every_prompt_holds_a_trigger_and_scenes_vary():
    dataset = Dataset(root=Path("/d"), concepts=(concept("mychar", ["mychar, 1girl, smile"] * 3),))
    prompts = validation_prompts(dataset, n=len(VALIDATION_SCENES) + 2)
    assert all(prompt.startswith("mychar") for prompt, _ in prompts)
    assert len({prompt for prompt, _ in prompts}) == len(VALIDATION_SCENES)  # then the scenes repeat
    assert len({seed for _, seed in prompts}) == len(prompts)  # a fresh seed for each
    assert validation_prompts(dataset, n=2) == prompts[:2]  # more prompts only add at the end


def test_trigger_is_the_most_common_first_tag_ties_alphabetical():
    assert concept_trigger(concept("zz", ["sks dog, grass", "sks dog, park", "dog, sofa"])) == "sks dog"
    assert concept_trigger(concept("zz", ["beta, x", "alpha, y"])) == "alpha"
    assert concept_trigger(concept("zz", ["alpha, y", "beta, x"])) == "alpha"


def test_trigger_falls_back_to_the_folder_name():
    # without caption files the records carry the folder's class tokens as caption (kohya)
    uncaptioned = Concept(folder=Path("/d/5_ohwx man"), name="ohwx man", repeats=5, is_reg=False,
                          images=(record("ohwx man", "ohwx man", has_caption_file=False),))
    assert concept_trigger(uncaptioned) == "ohwx man"
    assert concept_trigger(concept("ohwx man", ["", " , tag"])) == "ohwx man"


def test_regularisation_concepts_and_duplicates_are_left_out():
    dataset = Dataset(root=Path("/d"),
                      concepts=(concept("a", ["lrfa, x"]), concept("a2", ["lrfa, y"]), concept("b", ["lrfb"])),
                      reg_concepts=(concept("person", ["person"], is_reg=True),))
    assert dataset_triggers(dataset) == ["lrfa", "lrfb"]
    assert [p for p, _ in validation_prompts(dataset, 2)] == ["lrfa, portrait, close-up", "lrfb in a park, daylight"]


def test_prompts_are_not_escaped():
    dataset = Dataset(root=Path("/d"), concepts=(concept("x", ["<b>&amp; tag</b>, y"]),))
    assert validation_prompts(dataset, 1)[0][0] == "<b>&amp; tag</b>, portrait, close-up"


def test_bad_requests():
    with pytest.raises(ValueError, match="at least one"):
        validation_prompts(Dataset(root=Path("/d"), concepts=(concept("a", ["a"]),)), n=0)
    with pytest.raises(DatasetError, match="no training concept"):
        validation_prompts(Dataset(root=Path("/d"), concepts=()), n=2)
