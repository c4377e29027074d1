"""Aspect-ratio bucketing as kohya sd-scripts does it. Pure: no torch, no PIL.

Ported from the semantics of kohya's `make_bucket_resolutions` (library/model_util.py) and
`BucketManager.select_bucket` (library/train_util.py); not a copy of its code. Two modes:

- predefined buckets (default): a fixed list of (width, height) resolutions of about the training
  area; each image goes to the bucket with the closest aspect ratio, is resized to COVER it (aspect
  ratio kept) and centre-cropped. With bucketing disabled the list is the one square
  `resolution x resolution`.
- `bucket_no_upscale`: the bucket is derived per image: downscale to the training area if larger,
  round down to multiples of `reso_steps`, never upscale.

Sizes are (width, height) throughout, as kohya and PIL write them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

Size = tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class BucketAssignment:
    """Where one image of `size` trains: resized to `resized`, then centre-cropped to `bucket`."""

    size: Size
    bucket: Size
    resized: Size

    @property
    def scale(self) -> float:
        """Linear resize factor (> 1 is an upscale)."""
        return max(self.resized[0] / self.size[0], self.resized[1] / self.size[1])

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        return centre_crop_box(self.resized, self.bucket)


def make_bucket_resolutions(max_reso: Size, min_size: int = 256, max_size: int = 1024, divisible: int = 64) -> list[Size]:
    """kohya's predefined buckets: a square of about the area of `max_reso`, plus for every width
    from min_size to max_size (step `divisible`) the tallest height that keeps the area, both
    orientations. Sorted, no duplicates."""
    max_area = max_reso[0] * max_reso[1]
    side = int(math.sqrt(max_area) // divisible) * divisible
    resolutions = {(side, side)}
    for width in range(min_size, max_size + 1, divisible):
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resolutions.add((width, height))
            resolutions.add((height, width))
    return sorted(resolutions)


def cover_size(size: Size, bucket: Size) -> Size:
    """The size that covers `bucket` with the aspect ratio of `size` (kohya's rounding)."""
    width, height = size
    if width / height > bucket[0] / bucket[1]:  # wider than the bucket: match heights
        scale = bucket[1] / height
    else:
        scale = bucket[0] / width
    resized = (int(width * scale + 0.5), int(height * scale + 0.5))
    # Float rounding can leave a side one pixel short of the bucket; the crop needs it covered.
    return max(resized[0], bucket[0]), max(resized[1], bucket[1])


def select_bucket(size: Size, resolutions: Sequence[Size]) -> BucketAssignment:
    """The predefined bucket with the closest aspect ratio (an exact size match wins; ties go to
    the first in sorted order, like numpy's argmin in kohya)."""
    if not resolutions:
        raise ValueError("no bucket resolutions to choose from")
    if tuple(size) in set(resolutions):
        bucket = tuple(size)
    else:
        aspect = size[0] / size[1]
        bucket = min(sorted(resolutions), key=lambda r: abs(r[0] / r[1] - aspect))
    return BucketAssignment(size=tuple(size), bucket=bucket, resized=cover_size(size, bucket))


def _round_to_steps(value: float, steps: int) -> int:
    rounded = int(value + 0.5)
    return rounded - rounded % steps


def _downscaled_size(size: Size, max_area: int, steps: int) -> Size:
    """kohya's no-upscale resize of an image larger than `max_area`: keep the aspect ratio and make
    one side a multiple of `steps`, choosing the side whose rounding distorts the ratio least."""
    width, height = size
    aspect = width / height
    scaled_width = math.sqrt(max_area * aspect)
    scaled_height = max_area / scaled_width
    width_rounded = _round_to_steps(scaled_width, steps)
    height_for_width = _round_to_steps(width_rounded / aspect, steps)
    height_rounded = _round_to_steps(scaled_height, steps)
    width_for_height = _round_to_steps(height_rounded * aspect, steps)
    # Extreme aspect ratios can round a side to 0: treat that choice as infinitely distorted.
    error_w = abs(width_rounded / height_for_width - aspect) if height_for_width else math.inf
    error_h = abs(width_for_height / height_rounded - aspect) if height_rounded else math.inf
    if error_w < error_h:
        return width_rounded, int(width_rounded / aspect + 0.5)
    return int(height_rounded * aspect + 0.5), height_rounded


def select_bucket_no_upscale(size: Size, max_area: int, reso_steps: int = 64) -> BucketAssignment:
    """kohya's `bucket_no_upscale`: a per-image bucket, never larger than the image. A side can
    round down to 0 for a very thin or tiny image; the caller must reject such a bucket."""
    size = tuple(size)
    resized = _downscaled_size(size, max_area, reso_steps) if size[0] * size[1] > max_area else size
    bucket = (resized[0] - resized[0] % reso_steps, resized[1] - resized[1] % reso_steps)
    return BucketAssignment(size=size, bucket=bucket, resized=resized)


def centre_crop_box(resized: Size, bucket: Size) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centre crop of a `resized` image to `bucket`."""
    left = (resized[0] - bucket[0]) // 2
    top = (resized[1] - bucket[1]) // 2
    return left, top, left + bucket[0], top + bucket[1]


@dataclass(frozen=True)
class Bucketer:
    """Bucket settings of one dataset (kohya's --resolution, --enable_bucket, --min_bucket_reso,
    --max_bucket_reso, --bucket_reso_steps, --bucket_no_upscale)."""

    resolution: int
    enable_bucket: bool = True
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    reso_steps: int = 64
    no_upscale: bool = False

    @cached_property
    def resolutions(self) -> list[Size]:
        """The predefined buckets (unused in no-upscale mode); computed once per Bucketer."""
        if not self.enable_bucket:
            return [(self.resolution, self.resolution)]
        return make_bucket_resolutions(
            (self.resolution, self.resolution), self.min_bucket_reso, self.max_bucket_reso, self.reso_steps
        )

    def assign(self, size: Size) -> BucketAssignment:
        if self.enable_bucket and self.no_upscale:
            return select_bucket_no_upscale(size, self.resolution * self.resolution, self.reso_steps)
        return select_bucket(size, self.resolutions)
