"""How a study records its held-out images and reads them back (lrfind.study.held_out), on a
stand-in for the Optuna study: new split, resumed split, legacy study, changed options, --validation-dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrfind.errors import DatasetError, LrfindError
from lrfind.study.config import StudyConfig
from lrfind.study.held_out import HELD_OUT_ATTR, ensure_held_out
from test_holdout import ROOT, _concept, _dataset


class FakeStudy:
    def __init__(self, **attrs):
        self.user_attrs = dict(attrs)

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def _cfg(**overrides) -> StudyConfig:
    return StudyConfig(**{"dataset": {"train_dir": ROOT}, "name": "s", **overrides})


def _no_folder(path):
    raise AssertionError(f"scanned {path} without a --validation-dir")


def test_a_new_study_records_its_split_and_a_resumed_one_reads_it_back():
    dataset = _dataset(("10_cat", 10), ("5_cup", 3))
    study = FakeStudy()
    first = ensure_held_out(study, _cfg(), dataset, _no_folder)
    record = study.user_attrs[HELD_OUT_ATTR]
    assert record["source"] == "split" and len(record["images"]) == 2 and record["fraction"] == 0.2
    assert [r.path for r in first.records] == [ROOT / p for p in record["images"]]
    assert len(first.train_dataset.train_images) == 11 and any("5_cup" in w for w in first.warnings)
    # resumed: the recorded list wins, even when the scan would now pick others
    study.user_attrs[HELD_OUT_ATTR] = {**record, "images": ["10_cat/img00.png"]}
    again = ensure_held_out(study, _cfg(), dataset, _no_folder)
    assert [r.path for r in again.records] == [ROOT / "10_cat/img00.png"]
    with pytest.raises(LrfindError, match="--validation-min-images 5 \\(it was 4\\)"):
        ensure_held_out(study, _cfg(validation_min_images=5), dataset, _no_folder)
    with pytest.raises(LrfindError, match="--validation-dir"):
        ensure_held_out(study, _cfg(validation_dir=Path("/v")), dataset, _no_folder)


def test_a_study_from_before_held_out_images_keeps_validating_on_its_training_images():
    dataset = _dataset(("10_cat", 10))
    study = FakeStudy(baseline_val_loss=0.1)
    held = ensure_held_out(study, _cfg(), dataset, _no_folder)
    assert held.records == () and held.train_dataset is dataset and "began before held-out images" in held.warnings[0]
    assert HELD_OUT_ATTR not in study.user_attrs


def test_validation_dir_is_recorded_relative_to_itself_and_must_not_share_images():
    from dataclasses import replace

    from lrfind.data.types import Dataset

    dataset = _dataset(("10_cat", 6))
    other = Path("/v")
    cat = _concept("1_cat", 2)  # under ROOT: moved to /v
    cat = replace(cat, folder=other / "1_cat", images=tuple(replace(r, path=other / "1_cat" / r.path.name)
                                                            for r in cat.images))
    folder = Dataset(root=other, concepts=(cat,))
    study = FakeStudy()
    held = ensure_held_out(study, _cfg(validation_dir=other), dataset, lambda path: folder)
    assert study.user_attrs[HELD_OUT_ATTR]["images"] == ["1_cat/img00.png", "1_cat/img01.png"]
    assert held.source == "dir" and held.train_dataset is dataset and len(held.records) == 2
    with pytest.raises(LrfindError, match="also a training image"):
        ensure_held_out(FakeStudy(), _cfg(validation_dir=ROOT), dataset, lambda path: dataset)

    def missing(path):
        raise DatasetError(f"dataset folder {path} does not exist: check the path")

    with pytest.raises(DatasetError, match="^--validation-dir /nope: dataset folder /nope does not exist"):
        ensure_held_out(FakeStudy(), _cfg(validation_dir=Path("/nope")), dataset, missing)
