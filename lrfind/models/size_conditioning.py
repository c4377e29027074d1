"""SDXL's size/crop conditioning per image, computed as kohya sd-scripts computes it. Pure Python.

kohya (library/train_util.py: `trim_and_resize_if_required`, `BucketManager.get_crop_ltrb` and the
dataset's `__getitem__`) passes the U-Net, per image: the original size (h, w) before any resize;
a crop top-left that follows Stability AI's preprocessing: the offsets of the image FITTED inside
its bucket (aspect ratio kept), not the pixels the centre crop cut off; and the target size
(h, w) = the bucket. With a horizontal flip the left offset is measured from the other side
(bucket width - crop right). kohya computes the offsets in floats and truncates; so does this.
"""

from __future__ import annotations

Size = tuple[int, int]  # (width, height)


def kohya_crop_ltrb(bucket: Size, original: Size) -> tuple[float, float, float, float]:
    """kohya's BucketManager.get_crop_ltrb(bucket_reso, image_size), floats as kohya leaves them."""
    bucket_ar = bucket[0] / bucket[1]
    image_ar = original[0] / original[1]
    if bucket_ar > image_ar:  # the bucket is wider: fit the height
        resized_width, resized_height = bucket[1] * image_ar, bucket[1]
    else:
        resized_width, resized_height = bucket[0], bucket[0] / image_ar
    crop_left = (bucket[0] - resized_width) // 2
    crop_top = (bucket[1] - resized_height) // 2
    return crop_left, crop_top, crop_left + resized_width, crop_top + resized_height


def kohya_time_ids(original: Size, bucket: Size, flip: bool = False) -> tuple[int, int, int, int, int, int]:
    """(original h, original w, crop top, crop left, target h, target w) of one image."""
    left, top, right, _ = kohya_crop_ltrb(bucket, original)
    crop_left = bucket[0] - right if flip else left
    return (int(original[1]), int(original[0]), int(top), int(crop_left), int(bucket[1]), int(bucket[0]))
