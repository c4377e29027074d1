"""benchmarks/generalisation.py's pure parts: its three disjoint image sets and its verdict."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "generalisation.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("generalisation_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_crop_boxes_are_deterministic_inside_the_photo_and_distinct(bench):
    boxes = bench.crop_boxes(451, 300, 12, seed=0)
    assert boxes == bench.crop_boxes(451, 300, 12, seed=0)
    assert boxes != bench.crop_boxes(451, 300, 12, seed=1)
    assert len(boxes) == 12
    for left, top, side in boxes:
        assert 150 <= side <= 300 and 0 <= left <= 451 - side and 0 <= top <= 300 - side
    for a, b in itertools.combinations(boxes, 2):
        assert bench.iou(a, b) <= bench.MAX_IOU


def test_iou_of_known_boxes(bench):
    assert bench.iou((0, 0, 10), (0, 0, 10)) == 1.0
    assert bench.iou((0, 0, 10), (10, 0, 10)) == 0.0
    assert bench.iou((0, 0, 10), (5, 0, 10)) == pytest.approx(50 / 150)


def test_crop_boxes_says_when_the_photo_has_no_room(bench):
    with pytest.raises(ValueError, match="could not place"):
        bench.crop_boxes(100, 100, 50, seed=0, max_iou=0.0)


def test_split_boxes_spreads_the_test_set_and_keeps_every_box_once(bench):
    boxes = list(range(12))
    dataset, test = bench.split_boxes(boxes, 8)
    assert len(dataset) == 8 and len(test) == 4
    assert sorted(dataset + test) == boxes
    assert test == [1, 4, 7, 10]  # spread through the list, not its tail
    assert bench.split_boxes(boxes, 12) == (boxes, [])
    with pytest.raises(ValueError):
        bench.split_boxes(boxes, 13)


def test_check_disjoint_names_the_shared_file(bench):
    bench.check_disjoint({"train": ["a.jpg", "b.jpg"], "held-out": ["c.jpg"], "test": ["d.jpg"]})
    with pytest.raises(ValueError, match="c.jpg is both in held-out and test"):
        bench.check_disjoint({"train": ["a.jpg"], "held-out": ["c.jpg"], "test": ["c.jpg"]})


def test_written_image_sets_are_disjoint_kohya_folders(bench, tmp_path):
    dataset, test = bench.write_image_sets(tmp_path)
    for root, counts in ((dataset, bench.DATASET_IMAGES), (test, bench.TEST_IMAGES)):
        for folder, n in counts.items():
            images = sorted((root / folder).glob("*.jpg"))
            assert len(images) == n
            assert all(p.with_suffix(".txt").read_text().startswith(folder.split("_")[1].split()[0]) for p in images)
    names = {part: [p.name for p in root.rglob("*.jpg")] for part, root in (("dataset", dataset), ("test", test))}
    bench.check_disjoint(names)
    # no crop of one set is a near-duplicate of a crop of the other (names carry the boxes)
    for a, b in itertools.product(names["dataset"], names["test"]):
        source_a, *box_a = Path(a).stem.split("_")
        source_b, *box_b = Path(b).stem.split("_")
        if source_a == source_b:
            assert bench.iou(tuple(map(int, box_a)), tuple(map(int, box_b))) <= bench.MAX_IOU


def _outcome(bench, objective, test_loss, drift, **point):
    values = {"network_dim": 8, "network_alpha": 8.0, "unet_lr": 0.003, "epochs": 10, "repeats": 1, **point}
    return bench.Outcome(objective, values, test_loss, 0.12, drift, 5, 0.9, 6, 600)


def test_same_point_compares_lr_as_a_float(bench):
    a = _outcome(bench, "old", 0.1, 0.01).point
    assert bench.same_point(a, {**a, "unet_lr": 0.003 * (1 + 1e-5)})
    assert not bench.same_point(a, {**a, "unet_lr": 0.0031})
    assert not bench.same_point(a, {**a, "epochs": 9})
    assert not bench.same_point(a, {k: v for k, v in a.items() if k != "repeats"})


def test_verdict_says_no_disagreement_rather_than_a_win(bench):
    old, new = _outcome(bench, "old", 0.110, 0.02), _outcome(bench, "new", 0.110, 0.02)
    assert bench.verdict(old, new, 0.01).startswith("no disagreement")


def test_verdict_on_disagreeing_runs(bench):
    old = _outcome(bench, "old", 0.110, 0.020, epochs=16)
    better = _outcome(bench, "new", 0.100, 0.010, epochs=4)
    worse = _outcome(bench, "new", 0.120, 0.010, epochs=4)
    within = _outcome(bench, "new", 0.1105, 0.010, epochs=4)
    assert bench.verdict(old, better, 0.01) == ("disagreed: the new objective's run is better on the test set "
                                                "(loss -9.09%, drift -50%)")
    assert "worse on the test set (loss +9.09%" in bench.verdict(old, worse, 0.01)
    assert bench.verdict(old, within, 0.01).startswith("disagreed, but test loss within the 1% noise (+0.45%)")
    assert better.test_ratio == pytest.approx(0.100 / 0.12)
    assert "drift +inf%" in bench.verdict(_outcome(bench, "old", 0.110, 0.0, epochs=16), better, 0.01)


def test_curve_spread_of_the_last_epochs(bench):
    rows = [{"epoch": 0, "test_loss": 5.0}] + [{"epoch": e, "test_loss": v} for e, v in enumerate([9, 9, 1, 3, 1, 3], 1)]
    assert bench.curve_spread(rows, last=4) == pytest.approx(0.5)  # 1, 3, 1, 3: sd 1, mean 2; the base row is left out
    assert bench.curve_spread(rows[:2]) == 0.0
