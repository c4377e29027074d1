"""Every broken file named in one run, and kohya's rule for small images (upscale, or no-upscale buckets)."""

from __future__ import annotations

import json
import logging
import math

import pytest

from dataset_photos import write_caption, write_photo
from lrfind import cli
from lrfind.config import DatasetConfig
from lrfind.data.images import load_bucket_image
from lrfind.data.kohya import scan_dataset
from lrfind.data.problems import DatasetProblems


@pytest.fixture(autouse=True)
def only_the_commands_used_here(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {"dataset": "lrfind.cli.dataset_cmd", "train": "lrfind.cli.train_cmd"})


def _broken_dataset(root):
    """One good image, five different broken files, and two images kohya trains as they are."""
    folder = root / "10_x"
    write_caption(write_photo(folder / "good.png"), "x, cat")
    truncated = write_photo(folder / "truncated.jpg")
    truncated.write_bytes(truncated.read_bytes()[:3000])
    (folder / "zero.png").write_bytes(b"")
    write_photo(folder / "latin.png").with_suffix(".txt").write_bytes("caf\xe9, chat".encode("latin-1"))
    (folder / "fake.webp").write_bytes(b"not a webp" * 30)
    write_caption(write_photo(folder / "blank.png"), "\n")
    write_photo(folder / "no_caption.png")  # kohya captions it with the class tokens: a warning
    write_caption(write_photo(folder / "tiny.png", size=(128, 128)), "x, small")  # kohya upscales it: a warning
    return root


BROKEN = {  # the file each error names -> its reason
    "10_x/truncated.jpg": "is truncated",
    "10_x/zero.png": "0-byte",
    "10_x/latin.txt": "not UTF-8",
    "10_x/fake.webp": "not a readable image",
    "10_x/blank.txt": "is empty",
}


def _rows(out):
    return {line.split()[0]: line for line in out.splitlines() if line.startswith("10_x/")}


def test_check_names_all_five_broken_files_in_one_run(tmp_path, capsys):
    root = _broken_dataset(tmp_path / "ds")
    code = cli.main(["dataset", "check", str(root)])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (f"lrfind: error: 5 file(s) in {root} cannot be trained (listed above): "
                           "fix or delete them, then run the check again")
    assert out.startswith("problems: 5 error(s) (cannot train), 1 warning(s)")
    rows = _rows(out)
    assert set(rows) == set(BROKEN)  # the good, uncaptioned and tiny images are not errors
    for name, reason in BROKEN.items():
        assert " error " in rows[name] and reason in rows[name]
    assert "warning" in out and "tiny.png 4.0x" in out


def test_check_json_lists_every_problem(tmp_path, capsys):
    root = _broken_dataset(tmp_path / "ds")
    assert cli.main(["dataset", "check", str(root), "--json"]) == 2
    problems = json.loads(capsys.readouterr().out)["problems"]
    fatal = {p["path"]: p for p in problems if p["fatal"]}
    assert set(fatal) == {str(root / name) for name in BROKEN}
    assert all(p["fix"] for p in problems)
    assert [p["fatal"] for p in problems].count(False) == 1


def test_training_error_names_the_first_file_and_counts_the_others(tmp_path):
    root = _broken_dataset(tmp_path / "ds")
    with pytest.raises(DatasetProblems) as caught:
        scan_dataset(DatasetConfig(train_dir=root))
    message = str(caught.value)
    assert "\n" not in message and "blank.txt is empty" in message  # files in sorted order
    assert f"(and 4 more file problem(s): `lrfind dataset check {root}` lists them all)" in message


def test_warnings_alone_are_not_fatal(tmp_path, capsys):
    root = tmp_path / "ds"
    write_photo(root / "10_x" / "no_caption.png")
    write_photo(root / "notes" / "a.png")
    assert cli.main(["dataset", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "warnings: 2" in out and "error" not in out
    assert "have no caption file" in out and "rename it to 10_notes" in out


# ---- small images: kohya's rule -------------------------------------------------------------------


def kohya_no_upscale_bucket(width, height, resolution, steps=64):
    """kohya's BucketManager.select_bucket, no_upscale branch (train_util.py at 48d368fa), restated."""
    max_area = resolution * resolution
    if width * height > max_area:
        aspect = width / height
        w = math.sqrt(max_area * aspect)
        h = max_area / w

        def round_to_steps(x):
            x = int(x + 0.5)
            return x - x % steps

        wr = round_to_steps(w)
        hr = round_to_steps(h)
        if abs(wr / round_to_steps(wr / aspect) - aspect) < abs(round_to_steps(hr * aspect) / hr - aspect):
            resized = (wr, int(wr / aspect + 0.5))
        else:
            resized = (int(hr * aspect + 0.5), hr)
    else:
        resized = (width, height)
    return (resized[0] - resized[0] % steps, resized[1] - resized[1] % steps), resized


def _small_dataset(root):
    write_caption(write_photo(root / "4_x" / "tiny.png", size=(128, 128)), "x, cat")
    write_caption(write_photo(root / "4_x" / "small.png", size=(130, 100)), "x, cat, small")
    write_caption(write_photo(root / "4_x" / "big.png", size=(600, 600)), "x, cat, big")
    return root


def test_a_128_px_image_at_512_is_upscaled_into_its_bucket_with_one_warning(tmp_path):
    dataset = scan_dataset(DatasetConfig(train_dir=_small_dataset(tmp_path / "ds"), resolution=512), log_warnings=False)
    tiny = {r.path.name: r for r in dataset.train_images}["tiny.png"]
    assert (tiny.bucket, tiny.resized) == ((512, 512), (512, 512))  # kohya: 4x up, no crop
    assert tuple(load_bucket_image(tiny).shape) == (3, 512, 512)
    [warning] = dataset.warnings
    text = str(warning)
    assert "2 image(s) are upscaled more than 2x" in text
    assert "4_x/small.png 4.5x (130x100 into 576x448), 4_x/tiny.png 4.0x (128x128 into 512x512)" in text
    assert "--bucket-no-upscale" in text and "larger images" in text and "big.png" not in text


@pytest.mark.parametrize("size", [(128, 128), (130, 100), (600, 600), (2000, 700), (333, 1111)])
def test_no_upscale_places_small_images_in_their_own_bucket_as_kohya_does(tmp_path, size):
    write_photo(tmp_path / "ds" / "1_x" / "a.png", size=size)
    [record] = scan_dataset(DatasetConfig(train_dir=tmp_path / "ds", bucket_no_upscale=True)).train_images
    assert (record.bucket, record.resized) == kohya_no_upscale_bucket(*size, 512)
    if size == (128, 128):
        assert record.bucket == (128, 128)  # a bucket of its own, far below 512x512 and min_bucket_reso


def test_a_128_px_image_trains_at_512_with_a_warning_and_at_128_with_no_upscale(tmp_path, caplog, capsys):
    root = tmp_path / "ds"
    write_caption(write_photo(root / "2_x" / "tiny.png", size=(128, 128)), "x, cat")
    base = ["train", str(root), "--model", "tiny", "--max-train-steps", "1", "--network-dim", "2",
            "--no-progress", "--network-train-unet-only"]
    with caplog.at_level(logging.WARNING, logger="lrfind.data.kohya"):
        assert cli.main([*base, "--resolution", "512", "--output-dir", str(tmp_path / "up")]) == 0
    assert [r.message for r in caplog.records if "tiny.png 4.0x (128x128 into 512x512)" in r.message]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lrfind.data.kohya"):
        assert cli.main([*base, "--resolution", "512", "--bucket-no-upscale", "--output-dir", str(tmp_path / "own")]) == 0
    assert not [r for r in caplog.records if "upscaled" in r.message]
    assert "trained 1 steps" in capsys.readouterr().out


def test_a_folder_of_only_broken_images_is_not_called_empty(tmp_path):
    (tmp_path / "ds" / "2_broken").mkdir(parents=True)
    (tmp_path / "ds" / "2_broken" / "a.png").write_bytes(b"")
    (tmp_path / "ds" / "3_empty").mkdir()
    with pytest.raises(DatasetProblems) as caught:
        scan_dataset(DatasetConfig(train_dir=tmp_path / "ds"))
    assert [(p.path.rsplit("/", 1)[-1], p.fatal) for p in caught.value.problems] == [("a.png", True), ("3_empty", False)]
