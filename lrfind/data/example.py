"""The small example dataset shipped inside the package (real photos, kohya layout).

Made once by scripts/make_example_dataset.py from scikit-image's bundled photographs: a cat
(`10_lrfcat cat`, 6 crops of different aspect ratios) and an espresso cup (`5_lrfcup cup`, 2). Every
image checks clean at resolution 512 and lands in one of several buckets.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lrfind.errors import DatasetError

EXAMPLE_DATASET_DIR = Path(__file__).resolve().parent.parent / "assets" / "example_dataset"


def example_dataset_path() -> Path:
    """The shipped example dataset (read-only in an installed package: copy it before editing)."""
    if not EXAMPLE_DATASET_DIR.is_dir():
        raise DatasetError(f"the example dataset {EXAMPLE_DATASET_DIR} is missing: reinstall lrfind")
    return EXAMPLE_DATASET_DIR


def copy_example_dataset(dest: Path) -> Path:
    """Copy the example dataset to `dest` (which must not exist) and return `dest`."""
    dest = Path(dest)
    if dest.exists():
        raise DatasetError(f"{dest} already exists: choose a new folder for the example dataset")
    shutil.copytree(example_dataset_path(), dest)
    return dest
