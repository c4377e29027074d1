"""Load one dataset image as the training tensor of its bucket.

The same steps as kohya's latent caching (resize to cover the bucket, centre crop), with two
deliberate differences: the EXIF orientation is applied (as in `scan_dataset`, so the size matches
the record) and transparent pixels are composited on white instead of keeping their hidden RGB.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from lrfind.data.buckets import centre_crop_box
from lrfind.data.types import ImageRecord
from lrfind.errors import DatasetError

SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white and 16-bit greyscale scaled to 8 bits."""
    if image.mode in SIXTEEN_BIT_MODES:
        # convert("L") would clip 16-bit values at 255 (a white image); scale them instead.
        image = image.point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def load_bucket_pil(record: ImageRecord, flip: bool = False) -> Image.Image:
    """The image as trained: RGB, resized to `record.resized`, centre-cropped to `record.bucket`."""
    try:
        with Image.open(record.path) as opened:
            image = to_rgb(ImageOps.exif_transpose(opened))
    except OSError as err:
        raise DatasetError(f"image {record.path} cannot be read any more ({err}): run `lrfind dataset check` again") from None
    if image.size != tuple(record.size):
        raise DatasetError(
            f"image {record.path} is {image.size[0]}x{image.size[1]} px but was {record.size[0]}x{record.size[1]} "
            "when the dataset was scanned: it changed; scan the dataset again"
        )
    # Area averaging (BOX, like kohya's cv2.INTER_AREA) when shrinking avoids aliasing;
    # LANCZOS when enlarging keeps edges sharp.
    shrinking = record.resized[0] <= image.size[0]
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
    if image.size != tuple(record.resized):
        image = image.resize(record.resized, resample=resample)
    image = image.crop(centre_crop_box(record.resized, record.bucket))
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def load_bucket_image(record: ImageRecord, flip: bool = False):
    """torch.FloatTensor [3, H, W] in [-1, 1] of the image at its bucket size (W, H = bucket)."""
    import numpy as np
    import torch

    pixels = np.asarray(load_bucket_pil(record, flip), dtype=np.float32)  # H, W, 3 in 0..255
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous().div_(127.5).sub_(1.0)
