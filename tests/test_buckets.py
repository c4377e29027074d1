"""kohya's aspect-ratio buckets: predefined tables, bucket choice, cover-resize, no-upscale mode."""

from __future__ import annotations

import pytest

from lrfind.data.buckets import (
    Bucketer,
    centre_crop_box,
    cover_size,
    make_bucket_resolutions,
    select_bucket,
    select_bucket_no_upscale,
)

# kohya's table for --resolution 512 --min_bucket_reso 256 --max_bucket_reso 1024 (worked by hand:
# height = min(1024, (512*512 // width) // 64 * 64) for width = 256, 320, ..., 1024).
KOHYA_512 = [
    (256, 832), (256, 896), (256, 960), (256, 1024), (320, 704), (320, 768), (384, 640), (448, 576),
    (512, 512), (576, 448), (640, 384), (704, 320), (768, 320), (832, 256), (896, 256), (960, 256),
    (1024, 256),
]


def test_predefined_buckets_match_kohya_at_512():
    assert make_bucket_resolutions((512, 512), 256, 1024, 64) == KOHYA_512


@pytest.mark.parametrize("resolution, lo, hi", [(512, 256, 1024), (768, 256, 1024), (128, 64, 256), (640, 320, 960)])
def test_predefined_buckets_keep_area_and_steps(resolution, lo, hi):
    buckets = make_bucket_resolutions((resolution, resolution), lo, hi, 64)
    side = int(resolution // 64) * 64
    assert (side, side) in buckets
    for w, h in buckets:
        assert w % 64 == 0 and h % 64 == 0
        assert w * h <= resolution * resolution
        assert (h, w) in buckets  # both orientations
        assert lo <= min(w, h) and max(w, h) <= hi or (w, h) == (side, side)


@pytest.mark.parametrize(
    "size, bucket, resized",
    [
        ((451, 300), (640, 384), (640, 426)),  # wide photo: closest ratio 1.667, cover by width
        ((300, 300), (512, 512), (512, 512)),
        ((1000, 500), (704, 320), (704, 352)),  # ratio 2.0: 2.2 is closer than 1.667 and 2.4
        ((300, 400), (448, 576), (448, 597)),  # ratio 0.75 -> 0.778, cover by width
        ((576, 448), (576, 448), (576, 448)),  # exact size of a bucket: kept as is
        ((2048, 1536), (576, 448), (597, 448)),  # large images are downscaled
    ],
)
def test_select_bucket_table(size, bucket, resized):
    chosen = select_bucket(size, KOHYA_512)
    assert (chosen.bucket, chosen.resized) == (bucket, resized)


def test_exact_size_wins_over_an_earlier_bucket_with_the_same_ratio():
    assert select_bucket((512, 512), [(256, 256), (512, 512)]).bucket == (512, 512)
    # otherwise ties go to the first bucket in sorted order, as numpy's argmin does in kohya
    assert select_bucket((300, 300), [(512, 512), (256, 256)]).bucket == (256, 256)


@pytest.mark.parametrize("width", range(97, 2100, 131))
@pytest.mark.parametrize("height", range(89, 2100, 157))
def test_resized_image_covers_its_bucket_and_keeps_its_ratio(width, height):
    chosen = select_bucket((width, height), KOHYA_512)
    (rw, rh), (bw, bh) = chosen.resized, chosen.bucket
    assert rw >= bw and rh >= bh
    assert rw == bw or rh == bh  # covers tightly on one side
    # each side is rounded to whole pixels (at most 0.5 px off), so the ratio is kept to within that
    assert abs(rw * height - rh * width) <= (width + height) / 2
    left, top, right, bottom = chosen.crop_box
    assert (right - left, bottom - top) == (bw, bh) and left >= 0 and top >= 0 and right <= rw and bottom <= rh


def test_cover_size_never_falls_short_of_the_bucket():
    for width in range(100, 400):
        rw, rh = cover_size((width, 3 * width + 1), (320, 768))
        assert rw >= 320 and rh >= 768


@pytest.mark.parametrize(
    "size, bucket, resized",
    [
        ((300, 200), (256, 192), (300, 200)),  # smaller than the area: never upscaled, rounded down
        ((512, 512), (512, 512), (512, 512)),
        ((2000, 1000), (640, 320), (640, 320)),  # downscaled to about 512*512 pixels
        ((1024, 1024), (512, 512), (512, 512)),
        ((4000, 60), (3968, 0), (4000, 60)),  # too thin: a zero side the caller must reject
    ],
)
def test_no_upscale_table(size, bucket, resized):
    chosen = select_bucket_no_upscale(size, 512 * 512, 64)
    assert (chosen.bucket, chosen.resized) == (bucket, resized)
    assert chosen.resized[0] <= size[0] and chosen.resized[1] <= size[1]


def test_centre_crop_box():
    assert centre_crop_box((640, 426), (640, 384)) == (0, 21, 640, 405)
    assert centre_crop_box((597, 448), (576, 448)) == (10, 0, 586, 448)


def test_bucketer_modes():
    assert Bucketer(512).assign((451, 300)).bucket == (640, 384)
    assert Bucketer(512, enable_bucket=False).assign((451, 300)).bucket == (512, 512)
    # no-upscale is a bucketing mode: without buckets every image still goes to the square
    assert Bucketer(512, enable_bucket=False, no_upscale=True).assign((300, 200)).bucket == (512, 512)
    assert Bucketer(512, no_upscale=True).assign((300, 200)).bucket == (256, 192)
    # at 256 px with buckets from 128 to 512: (320, 192) has ratio 1.667, the closest to 1.503
    assert Bucketer(256, min_bucket_reso=128, max_bucket_reso=512).assign((451, 300)).bucket == (320, 192)
    assert Bucketer(512).assign((451, 300)).scale == pytest.approx(426 / 300)  # 640x426 from 451x300
