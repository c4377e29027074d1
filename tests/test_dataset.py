"""Scanning kohya-layout datasets of real photos, loading bucket images, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dataset_photos import photo, write_caption, write_photo
from lrfind.config import DatasetConfig
from lrfind.data.check import build_check_report, render_check_report
from lrfind.data.example import copy_example_dataset, example_dataset_path
from lrfind.data.images import load_bucket_image
from lrfind.data.kohya import scan_dataset
from lrfind.errors import DatasetError

CAT = "10_lrfcat cat"


def _scan(root, **options):
    return scan_dataset(DatasetConfig(train_dir=root, **options))


@pytest.fixture
def cat_dataset(tmp_path):
    """Two concepts; png, JPG (upper case), webp and bmp; one missing caption; three aspect ratios."""
    root = tmp_path / "ds"
    write_caption(write_photo(root / CAT / "a.png", "chelsea"), "lrfcat, cat, green eyes\nsecond line ignored\n")
    write_caption(write_photo(root / CAT / "b.JPG", "chelsea", box=(100, 0, 340, 300)), "  lrfcat, cat, close-up  ")
    write_photo(root / CAT / "c.webp", "chelsea", box=(0, 0, 300, 300))  # no caption
    write_caption(write_photo(root / "3_cup" / "cup.bmp", "coffee", size=(480, 320)), "cup, espresso")
    (root / CAT / "notes.md").write_text("not an image")
    return root


def test_layout_repeats_captions_and_buckets(cat_dataset):
    dataset = _scan(cat_dataset)
    assert [(c.folder.name, c.name, c.repeats) for c in dataset.concepts] == [("10_lrfcat cat", "lrfcat cat", 10), ("3_cup", "cup", 3)]
    cat = dataset.concepts[0]
    assert [r.path.name for r in cat.images] == ["a.png", "b.JPG", "c.webp"]
    assert [r.caption for r in cat.images] == ["lrfcat, cat, green eyes", "lrfcat, cat, close-up", "lrfcat cat"]
    assert cat.images[2].caption_path is None and cat.missing_captions == 1
    assert [r.size for r in cat.images] == [(451, 300), (240, 300), (300, 300)]
    assert [r.bucket for r in cat.images] == [(640, 384), (448, 576), (512, 512)]
    assert [r.resized for r in cat.images] == [(640, 426), (461, 576), (512, 512)]
    assert all(r.repeats == 10 and not r.is_reg for r in cat.images)
    assert dataset.concepts[1].images[0].bucket == (640, 384)
    assert dataset.warnings == ()


def test_resized_sizes_cover_the_buckets(cat_dataset):
    for record in _scan(cat_dataset).train_images:
        assert record.resized[0] >= record.bucket[0] and record.resized[1] >= record.bucket[1]
        assert abs(record.resized[0] * record.size[1] - record.resized[1] * record.size[0]) <= sum(record.size) / 2


def test_caption_extension_flag(cat_dataset):
    for image in (cat_dataset / CAT).glob("*.*"):
        if image.suffix in (".png", ".JPG", ".webp"):
            write_caption(image, f"lrfcat, from {image.suffix}", ".caption")
    dataset = _scan(cat_dataset, caption_extension="caption")  # the dot is added
    assert [r.caption for r in dataset.concepts[0].images] == ["lrfcat, from .png", "lrfcat, from .JPG", "lrfcat, from .webp"]
    assert dataset.concepts[1].missing_captions == 1  # the cup has only a .txt


def test_wrong_caption_extension_is_pointed_out(tmp_path):
    image = write_photo(tmp_path / "ds" / "5_cat" / "a.jpg", "chelsea")
    write_caption(image, "cat, tabby", ".caption")
    dataset = _scan(tmp_path / "ds")
    assert dataset.concepts[0].missing_captions == 1
    assert any("--caption-extension .caption" in str(w) for w in dataset.warnings)


def test_folders_without_repeats_are_skipped_with_a_warning(cat_dataset):
    write_photo(cat_dataset / "misc" / "x.png", "coffee")
    write_photo(cat_dataset / "0_zero" / "x.png", "coffee")
    write_photo(cat_dataset / "loose.png", "coffee")
    (cat_dataset / "2_empty").mkdir()
    dataset = _scan(cat_dataset)
    assert [c.folder.name for c in dataset.concepts] == ["10_lrfcat cat", "3_cup"]
    text = "\n".join(map(str, dataset.warnings))
    assert "misc" in text and "0_zero" in text and "2_empty" in text and "loose.png" not in text
    assert "1 image(s) directly in" in text


def test_reg_dir(cat_dataset, tmp_path):
    reg = tmp_path / "reg"
    for i in range(2):
        write_photo(reg / "1_cat" / f"r{i}.png", "chelsea", box=(i * 50, 0, 300 + i * 50, 300))
    dataset = _scan(cat_dataset, reg_dir=reg)
    assert [r.is_reg for r in dataset.reg_images] == [True, True]
    assert dataset.reg_concepts[0].name == "cat" and dataset.reg_images[0].caption == "cat"
    report = build_check_report(dataset, 512, 1, count_tokens=lambda s: len(s.split()))
    # 33 training samples (3 x 10 + 1 x 3): the 2 reg images fill up to 33 (17 + 16)
    reg_row = report.concepts[-1]
    assert (reg_row.kind, reg_row.samples_per_epoch) == ("reg", 33)
    assert report.steps_per_epoch == 66


def test_no_upscale_buckets(cat_dataset):
    dataset = _scan(cat_dataset, bucket_no_upscale=True)
    for record in dataset.train_images:
        assert record.bucket[0] <= record.size[0] and record.bucket[1] <= record.size[1]
    assert dataset.concepts[0].images[0].bucket == (448, 256)


def test_exif_orientation_swaps_the_size(tmp_path):
    path = tmp_path / "ds" / "1_cat" / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees: portrait
    write_photo(path, "chelsea", exif=exif.tobytes())
    record = _scan(tmp_path / "ds").train_images[0]
    assert record.size == (300, 451) and record.bucket == (384, 640)
    assert tuple(load_bucket_image(record).shape) == (3, 640, 384)


def test_load_bucket_image_shape_range_and_flip(cat_dataset):
    import torch

    for record in _scan(cat_dataset).train_images:
        pixels = load_bucket_image(record)
        assert pixels.dtype == torch.float32
        assert tuple(pixels.shape) == (3, record.bucket[1], record.bucket[0])
        assert -1.0 <= pixels.min() < -0.5 and 0.5 < pixels.max() <= 1.0
        assert torch.equal(load_bucket_image(record, flip=True), torch.flip(pixels, dims=[2]))


def test_load_bucket_image_is_the_centre_of_the_photo(tmp_path):
    write_photo(tmp_path / "ds" / "1_cat" / "a.png", "chelsea", size=(1024, 512))
    record = _scan(tmp_path / "ds").train_images[0]
    assert (record.bucket, record.resized) == ((704, 320), (704, 352))
    pixels = load_bucket_image(record).permute(1, 2, 0).numpy()
    expected = np.asarray(photo("chelsea").resize((1024, 512)).resize((704, 352)), dtype=np.float32)[16:336]
    assert np.abs((pixels + 1) * 127.5 - expected).mean() < 3.0  # same crop, resampling aside


def test_transparent_pixels_become_white_and_16_bit_greyscale_loads(tmp_path):
    rgba = photo("chelsea").convert("RGBA")
    alpha = np.full((300, 451), 255, np.uint8)
    alpha[:, :200] = 0
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "a.png")
    camera16 = (np.asarray(photo("camera"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(camera16).save(tmp_path / "b.png")
    root = tmp_path / "ds" / "1_x"
    root.mkdir(parents=True)
    (tmp_path / "a.png").rename(root / "a.png")
    (tmp_path / "b.png").rename(root / "b.png")
    alpha_record, grey_record = _scan(tmp_path / "ds", enable_bucket=False).train_images
    left = load_bucket_image(alpha_record)[:, :, :100]  # the transparent left part of the crop
    assert bool((left == 1.0).all())
    grey = load_bucket_image(grey_record)
    assert -0.9 < float(grey.mean()) < 0.9 and float(grey.std()) > 0.2  # not clipped to white


def test_load_bucket_image_notices_a_changed_file(cat_dataset):
    record = _scan(cat_dataset).train_images[0]
    write_photo(record.path, "coffee")
    with pytest.raises(DatasetError, match="a.png.*changed"):
        load_bucket_image(record)


def test_check_report_data(cat_dataset):
    long_caption = ", ".join(f"tag{i}" for i in range(80))
    write_caption(cat_dataset / CAT / "c.webp", long_caption)
    dataset = _scan(cat_dataset)
    report = build_check_report(dataset, 512, 2, count_tokens=lambda s: len(s.split(",")), epochs=3)
    cat, cup = report.concepts
    assert (cat.images, cat.repeats, cat.missing_captions, cat.tokens_min, cat.tokens_max) == (3, 10, 0, 3, 80)
    assert (cat.over_75_tokens, cat.over_225_tokens, cat.samples_per_epoch) == (1, 0, 30)
    assert cat.steps_per_epoch == 15  # three buckets of 10 samples, batch 2
    assert (cup.samples_per_epoch, cup.steps_per_epoch) == (3, 2)
    assert {(b.label, b.train_images, b.samples_per_epoch) for b in report.buckets} == {
        ("448x576", 1, 10), ("512x512", 1, 10), ("640x384", 2, 13)
    }
    assert report.steps_per_epoch == 5 + 5 + 7 and report.total_steps == 51
    assert any("longer than 75 tokens" in str(w) for w in report.warnings)
    json.dumps(report.to_dict())
    text = render_check_report(report)
    assert "10_lrfcat cat" in text and "640x384" in text and "= 51 steps" in text


def test_example_dataset_is_shipped_and_checks_clean(tmp_path):
    root = example_dataset_path()
    images = sorted(root.rglob("*.jpg"))
    assert 6 <= len(images) <= 10
    assert sum(p.stat().st_size for p in root.rglob("*")) < 400 * 1024
    dataset = _scan(copy_example_dataset(tmp_path / "example"))
    assert dataset.warnings == () and all(c.missing_captions == 0 for c in dataset.concepts)
    assert all(r.caption.startswith(r.concept.split()[0] + ",") for r in dataset.train_images)
    assert len({r.bucket for r in dataset.train_images}) >= 3
    with pytest.raises(DatasetError, match="already exists"):
        copy_example_dataset(tmp_path / "example")


# ---- bad input: one line naming the file and the fix --------------------------------------------


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _missing_folder(root):
    return root / "nope", root / "nope"


def _file_not_folder(root):
    (root / "CAT").write_text("x")
    return root / "CAT", root / "CAT"


def _empty_dataset(root):
    (root / "5_x").mkdir()
    write_caption(root / "5_x" / "a.png", "a")  # a caption, no image
    return root, root


def _no_repeats_folder(root):
    write_photo(root / "images" / "a.png")
    return root, root


def _zero_byte_image(root):
    (root / "1_x").mkdir()
    (root / "1_x" / "a.png").write_bytes(b"")
    return root, root / "1_x" / "a.png"


def _not_an_image(root):
    (root / "1_x").mkdir()
    (root / "1_x" / "a.jpg").write_bytes(b"not a JPEG at all" * 50)
    return root, root / "1_x" / "a.jpg"


def _truncated(suffix):
    def make(root):
        image = write_photo(root / "1_x" / f"a{suffix}")
        _truncate(image)
        return root, image

    return make


def _latin1_caption(root):
    caption = write_photo(root / "1_x" / "a.png").with_suffix(".txt")
    caption.write_bytes("caf\xe9, chat".encode("latin-1"))
    return root, caption


def _empty_caption(root):
    return root, write_caption(write_photo(root / "1_x" / "a.png"), "\n")


def _nul_caption(root):
    return root, write_caption(write_photo(root / "1_x" / "a.png"), "lrfcat\x00, cat")


def _utf16_caption(root):
    caption = write_photo(root / "1_x" / "a.png").with_suffix(".txt")
    caption.write_bytes("lrfcat, cat".encode("utf-16-le"))  # valid UTF-8, full of NULs
    return root, caption


# case -> (builder returning (folder to scan, file the message must name), reason in the message)
BAD_INPUTS = {
    "missing folder": (_missing_folder, "does not exist"),
    "file, not folder": (_file_not_folder, "is not a folder"),
    "empty dataset": (_empty_dataset, "holds no images"),
    "no N_ folder": (_no_repeats_folder, "no `N_name` subfolder"),
    "zero-byte image": (_zero_byte_image, "0-byte"),
    "unreadable image": (_not_an_image, "not a readable image"),
    "truncated jpeg": (_truncated(".jpg"), "truncated"),
    "truncated png": (_truncated(".png"), "truncated"),
    "non-UTF-8 caption": (_latin1_caption, "not UTF-8"),
    "empty caption": (_empty_caption, "is empty"),
    "NUL in caption": (_nul_caption, "control character (U+0000) at position 6"),
    "UTF-16 caption": (_utf16_caption, "UTF-16"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_one_line_naming_the_file(tmp_path, case):
    build, reason = BAD_INPUTS[case]
    root = tmp_path / "ds"
    root.mkdir()
    folder, named = build(root)
    with pytest.raises(DatasetError) as caught:
        _scan(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert reason in message
    assert str(named) in message


def test_far_smaller_message_gives_size_resolution_and_fix_with_strict_image_size(tmp_path):
    write_photo(tmp_path / "ds" / "1_x" / "small.png", "chelsea", size=(150, 100))
    assert _scan(tmp_path / "ds").train_images[0].bucket == (640, 384)  # kohya upscales it: so do we
    with pytest.raises(DatasetError) as caught:
        _scan(tmp_path / "ds", strict_image_size=True)
    message = str(caught.value)
    assert "150x100" in message and "640x384 bucket at resolution 512" in message and "4.3x" in message
    assert "lower --resolution" in message and "--strict-image-size" in message
    # the fix works: at resolution 192 it needs 1.92x to cover 192x192 (ratio 1.5 ties 1.0 and 2.0:
    # the first bucket in sorted order wins)
    strict = _scan(tmp_path / "ds", resolution=192, min_bucket_reso=128, strict_image_size=True)
    assert strict.train_images[0].bucket == (192, 192)


def test_far_smaller_with_strict_image_size_and_too_thin_in_no_upscale_mode(tmp_path):
    write_photo(tmp_path / "a" / "1_x" / "small.png", "chelsea", size=(150, 100))
    assert _scan(tmp_path / "a", bucket_no_upscale=True).train_images[0].bucket == (128, 64)
    with pytest.raises(DatasetError, match="small.png is 150x100 px, far smaller"):
        _scan(tmp_path / "a", bucket_no_upscale=True, strict_image_size=True)
    # kohya fails on this one too (a 0-px bucket side: division by zero in select_bucket)
    write_photo(tmp_path / "b" / "1_x" / "thin.png", "chelsea", size=(3000, 60))
    with pytest.raises(DatasetError, match="thin.png is 3000x60 px, too thin"):
        _scan(tmp_path / "b", bucket_no_upscale=True)


def test_reg_dir_problems_name_the_reg_folder(cat_dataset, tmp_path):
    with pytest.raises(DatasetError, match="regularisation folder.*nowhere.*does not exist"):
        _scan(cat_dataset, reg_dir=tmp_path / "nowhere")
    write_photo(tmp_path / "reg" / "imgs" / "a.png")
    with pytest.raises(DatasetError, match="regularisation folder.*no `N_name` subfolder"):
        _scan(cat_dataset, reg_dir=tmp_path / "reg")


def test_truncated_image_is_caught_even_if_pil_was_told_to_load_truncated_images(tmp_path, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some other library might do
    _truncate(write_photo(tmp_path / "ds" / "1_x" / "cut.jpg"))
    with pytest.raises(DatasetError, match="cut.jpg is truncated"):
        _scan(tmp_path / "ds")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
