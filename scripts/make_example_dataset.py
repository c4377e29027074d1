"""Write lrfind/assets/example_dataset from scikit-image's bundled photographs (run once; committed).

    python scripts/make_example_dataset.py [DEST]

Deterministic crops of `skimage.data.chelsea()` (a tabby cat, 451x300) and `skimage.data.coffee()`
(an espresso cup, 600x400), saved as JPEG quality 90 with kohya-style captions (comma-separated tags,
trigger word first). Sides stay >= 264 px so that every image covers its bucket at resolution 512,
with or without bucketing, with at most 2x upscaling (lrfind's "far smaller than the resolution"
limit), and the aspect ratios differ so that the images land in several buckets.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

DEFAULT_DEST = Path(__file__).resolve().parent.parent / "lrfind" / "assets" / "example_dataset"

# (source, (left, top, right, bottom) crop box, output size or None, greyscale, caption)
CAT = "10_lrfcat cat"
CUP = "5_lrfcup cup"
IMAGES = {
    (CAT, "01"): ("chelsea", (0, 0, 451, 300), None, False,
                  "lrfcat, cat, tabby cat, close-up, face, green eyes, pink nose, white whiskers, striped fur, blurry background"),
    (CAT, "02"): ("chelsea", (60, 0, 360, 300), None, False,
                  "lrfcat, cat, tabby cat, face, green eyes, pink nose, whiskers, ears, brown fur"),
    (CAT, "03"): ("chelsea", (16, 0, 280, 300), None, False,
                  "lrfcat, cat, tabby cat, close-up, ear, green eye, nose, striped fur, white whiskers"),
    (CAT, "04"): ("chelsea", (51, 0, 451, 300), None, False,
                  "lrfcat, cat, tabby cat, face, green eyes, pink nose, whiskers, blurry background, indoors"),
    (CAT, "05"): ("chelsea", (45, 0, 405, 300), None, True,
                  "lrfcat, cat, monochrome, greyscale, face, eyes, nose, whiskers, striped fur"),
    (CAT, "06"): ("chelsea", (176, 0, 440, 300), None, False,
                  "lrfcat, cat, close-up, green eye, pink nose, whiskers, chin, blurry background"),
    (CUP, "01"): ("coffee", (0, 0, 600, 400), (480, 320), False,
                  "lrfcup, cup, espresso, red cup, red saucer, silver spoon, wooden table, from above"),
    (CUP, "02"): ("coffee", (150, 0, 450, 400), None, False,
                  "lrfcup, cup, espresso, crema, red cup, saucer, spoon handle, wooden table, close-up"),
}


def make_image(source: str, box, size, greyscale: bool) -> Image.Image:
    image = Image.fromarray(np.asarray(getattr(data, source)())).convert("RGB").crop(box)
    if size is not None:
        image = image.resize(size, Image.Resampling.LANCZOS)
    if greyscale:
        image = image.convert("L").convert("RGB")
    return image


def write_example_dataset(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    for (folder, stem), (source, box, size, greyscale, caption) in IMAGES.items():
        target = dest / folder
        target.mkdir(parents=True, exist_ok=True)
        make_image(source, box, size, greyscale).save(target / f"{stem}.jpg", quality=90, optimize=True)
        (target / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")


if __name__ == "__main__":
    destination = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DEST
    write_example_dataset(destination)
    total = sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
    print(f"wrote {len(IMAGES)} images to {destination} ({total / 1024:.0f} KiB)")
