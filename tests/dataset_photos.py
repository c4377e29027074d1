"""Real photographs (scikit-image's bundled ones) written as dataset files, for the dataset tests."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image


@lru_cache(maxsize=None)
def photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(np.asarray(getattr(data, name)()))


def write_photo(path: Path, name: str = "chelsea", size: tuple[int, int] | None = None, box=None, **save) -> Path:
    """Save photo `name` (optionally cropped to `box`, resized to `size`) at `path`; format from the suffix."""
    image = photo(name)
    if box is not None:
        image = image.crop(box)
    if size is not None:
        image = image.resize(size, Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg") and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image.save(path, **save)
    return path


def write_caption(image_path: Path, text: str, extension: str = ".txt") -> Path:
    caption = image_path.parent / (image_path.stem + extension)
    caption.write_text(text, encoding="utf-8")
    return caption
