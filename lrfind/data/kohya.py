"""Scan a kohya-layout dataset: DATASET/<repeats>_<class tokens>/<image> + <stem><caption ext>.

Follows kohya sd-scripts' DreamBooth-style dataset rules: only subfolders whose name starts with
`N_` (N >= 1 repeats) are used, others are skipped with a warning; images are found directly in
those folders (not recursively); a caption is the first line of `<image stem><extension>`; an
image without one is captioned with the folder's class tokens. Unlike kohya we check every image
up front (decode fully, so truncated files are caught here and not mid-training) and apply the EXIF
orientation (kohya ignores it): sizes and buckets are those of the image as it is displayed.
Every file is checked before anything is refused, so one error names all the bad files (see
lrfind.data.problems). An image smaller than its bucket is upscaled into it, as kohya does; one
warning names the ones upscaled more than MAX_UPSCALE (refused only with `strict_image_size`).
"""

from __future__ import annotations

import logging
import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageFile, UnidentifiedImageError

from lrfind.config import IMAGE_EXTENSIONS, DatasetConfig
from lrfind.data.buckets import BucketAssignment, Bucketer
from lrfind.data.problems import DatasetProblems, Problem
from lrfind.data.types import Concept, Dataset, ImageRecord
from lrfind.errors import DatasetError

log = logging.getLogger(__name__)

FOLDER_PATTERN = re.compile(r"^(\d+)_(.*)$")
# An image that must be enlarged more than this (linearly) to cover its bucket is "far smaller
# than the resolution": it trains on blurry, upscaled pixels (2x = a quarter of the pixels). kohya
# upscales it silently; we warn, and refuse it only with strict_image_size. Smaller upscales are
# the norm (the shipped example's photos are upscaled 1.4-1.9x at 512) and pass without a word.
MAX_UPSCALE = 2.0
EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
OTHER_CAPTION_EXTENSIONS = (".txt", ".caption")


def bucketer_for(cfg: DatasetConfig) -> Bucketer:
    lo, hi = cfg.bucket_range
    return Bucketer(
        resolution=cfg.resolution,
        enable_bucket=cfg.enable_bucket,
        min_bucket_reso=lo,
        max_bucket_reso=hi,
        reso_steps=cfg.bucket_reso_steps,
        no_upscale=cfg.bucket_no_upscale,
    )


def scan_dataset(cfg: DatasetConfig, *, log_warnings: bool = True) -> Dataset:
    """Read the dataset folder (and the reg folder), check every image and caption, assign buckets.

    Raises DatasetError (one line naming the file and the fix) on anything that cannot be trained;
    when files are broken, a DatasetProblems listing every one of them. Warnings are returned in
    `Dataset.warnings` and, with `log_warnings`, logged (a training run shows them on stderr).
    """
    warnings: list[Problem] = []
    problems: list[Problem] = []
    bucketer = bucketer_for(cfg)
    concepts = _scan_root(cfg.train_dir, cfg, bucketer, False, warnings, problems)
    reg_concepts = _scan_root(cfg.reg_dir, cfg, bucketer, True, warnings, problems) if cfg.reg_dir else ()
    upscaled = _upscale_warning(cfg.train_dir, concepts + reg_concepts)
    warnings += [upscaled] if upscaled else []
    if problems:
        raise DatasetProblems(problems + warnings, cfg.train_dir)
    if log_warnings:
        for warning in warnings:
            log.warning("%s", warning)
    return Dataset(root=cfg.train_dir, concepts=concepts, reg_concepts=reg_concepts, warnings=tuple(warnings))


def concept_folders(root: Path, what: str, warnings: list[Problem]) -> list[tuple[Path, int, str]]:
    if not root.exists():
        raise DatasetError(f"{what} {root} does not exist: check the path")
    if not root.is_dir():
        raise DatasetError(f"{what} {root} is not a folder: pass the folder that holds the `N_name` subfolders")
    folders, skipped = [], []
    for child in sorted(root.iterdir()):
        # Dot folders (ours: .lrfind-caption-backup; others: .git, .ipynb_checkpoints) are skipped
        # without a word; kohya skips them too, as folders without an `N_` prefix.
        if not child.is_dir() or child.name.startswith("."):
            continue
        match = FOLDER_PATTERN.match(child.name)
        if match and int(match.group(1)) >= 1:
            folders.append((child, int(match.group(1)), match.group(2)))
        else:
            skipped.append(child)
            warnings.append(Problem.warning(child, "skipped: its name does not start with `N_` (N = repeats >= 1), as kohya requires",
                                            f"rename it to 10_{child.name} to train it"))
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        warnings.append(Problem.warning(root, f"{len(loose)} image(s) directly in it are ignored",
                                        f"move them into a subfolder such as {root / '10_name'}"))
    if not folders:
        example = root / "10_mychar"
        raise DatasetError(
            f"{what} {root} has no `N_name` subfolder: put the images in a folder such as {example} (10 = repeats)"
            + (f" (e.g. rename {skipped[0].name} to 10_{skipped[0].name})" if skipped else "")
        )
    return folders


def _scan_root(root: Path, cfg: DatasetConfig, bucketer: Bucketer, is_reg: bool, warnings: list[Problem],
               problems: list[Problem]) -> tuple[Concept, ...]:
    what = "regularisation folder (--reg-dir)" if is_reg else "dataset folder"
    folders = concept_folders(root, what, warnings)
    problems_before = len(problems)
    concepts = []
    for folder, repeats, name in folders:
        problems_in_folder = len(problems)
        concept = _scan_concept(folder, repeats, name, is_reg, cfg, bucketer, problems)
        if concept.images:
            concepts.append(concept)
        elif len(problems) == problems_in_folder:  # no images at all, not only broken ones
            warnings.append(Problem.warning(folder, "skipped: it has no images", f"put {', '.join(IMAGE_EXTENSIONS)} files in it"))
    if not concepts and len(problems) == problems_before:
        raise DatasetError(
            f"{what} {root} holds no images: put .png/.jpg/.jpeg/.webp/.bmp files into its `N_name` subfolders"
        )
    _warn_caption_extension(concepts, cfg.caption_extension, warnings)
    return tuple(concepts)


def _scan_concept(folder: Path, repeats: int, name: str, is_reg: bool, cfg: DatasetConfig, bucketer: Bucketer,
                  problems: list[Problem]) -> Concept:
    image_paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    records = []
    for path in image_paths:
        assignment = _checked_assignment(path, cfg, bucketer, problems)
        caption_path = caption_path_for(path, cfg.caption_extension)
        try:
            caption = read_caption(caption_path) if caption_path.is_file() else None
        except DatasetError as err:
            problems.append(Problem.from_error(caption_path, err))
            continue
        if assignment is None:
            continue
        records.append(
            ImageRecord(
                path=path,
                caption=name if caption is None else caption,
                caption_path=caption_path if caption is not None else None,
                concept=name,
                repeats=repeats,
                is_reg=is_reg,
                size=assignment.size,
                bucket=assignment.bucket,
                resized=assignment.resized,
            )
        )
    return Concept(folder=folder, name=name, repeats=repeats, is_reg=is_reg, images=tuple(records))


def _checked_assignment(path: Path, cfg: DatasetConfig, bucketer: Bucketer, problems: list[Problem]) -> BucketAssignment | None:
    """The image's bucket, or None with the reason added to `problems`."""
    try:
        assignment = bucketer.assign(read_image_size(path))
        check_image_size(path, assignment, bucketer, strict=cfg.strict_image_size)
    except DatasetError as err:
        problems.append(Problem.from_error(path, err))
        return None
    return assignment


def _upscale_warning(root: Path, concepts: tuple[Concept, ...], shown: int = 10) -> Problem | None:
    """One warning naming the images upscaled more than MAX_UPSCALE into their buckets."""
    upscaled = sorted(((r.upscale, r) for c in concepts for r in c.images if r.upscale > MAX_UPSCALE),
                      key=lambda pair: -pair[0])
    if not upscaled:
        return None
    names = [
        f"{r.path.parent.name}/{r.path.name} {factor:.1f}x ({r.size[0]}x{r.size[1]} into {r.bucket[0]}x{r.bucket[1]})"
        for factor, r in upscaled[:shown]
    ]
    more = f" and {len(upscaled) - shown} more" if len(upscaled) > shown else ""
    return Problem.warning(
        root,
        f"{len(upscaled)} image(s) are upscaled more than {MAX_UPSCALE:g}x into their bucket, as kohya does, and train "
        f"on blurry pixels: {', '.join(names)}{more}",
        "use larger images, or train with --bucket-no-upscale to keep each in a smaller bucket of its own size",
    )


def caption_path_for(image: Path, extension: str) -> Path:
    # Like kohya (splitext + extension), and unlike Path.with_suffix, allows extensions such as
    # `.wd14.txt`.
    return image.parent / (image.stem + extension)


@contextmanager
def _strict_decoding() -> Iterator[None]:
    # PIL's global switch: if some other code turned on loading of truncated images, a cut-off file
    # would decode silently with grey pixels. Force it off while we check.
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), after decoding the whole image."""
    if path.stat().st_size == 0:
        raise DatasetError(f"image {path} is an empty (0-byte) file: replace it or delete it")
    try:
        with _strict_decoding(), Image.open(path) as image:
            image.load()
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except PermissionError:
        raise DatasetError(f"image {path} cannot be read (permission denied): fix its permissions") from None
    except Image.DecompressionBombError:
        raise DatasetError(f"image {path} is too large for PIL's safety limit: downscale it") from None
    except UnidentifiedImageError:
        raise DatasetError(f"image {path} is not a readable image file: re-export it as PNG or JPEG, or delete it") from None
    except (OSError, SyntaxError, ValueError) as err:
        reason = "truncated (incomplete download or copy)" if "truncated" in str(err).lower() else f"damaged ({err})"
        raise DatasetError(f"image {path} is {reason}: replace it with a complete copy or delete it") from None
    if width < 1 or height < 1:
        raise DatasetError(f"image {path} has no pixels ({width}x{height}): replace it or delete it")
    return (height, width) if orientation in ROTATED_ORIENTATIONS else (width, height)


def check_image_size(path: Path, assignment: BucketAssignment, bucketer: Bucketer, strict: bool = False) -> None:
    """Reject an image too thin for a bucket (kohya fails on it too: a 0-px bucket side) and, when
    `strict`, an image far smaller than the resolution (see MAX_UPSCALE), which kohya would train."""
    (width, height), (bucket_w, bucket_h) = assignment.size, assignment.bucket
    if bucket_w < 1 or bucket_h < 1:
        raise DatasetError(
            f"image {path} is {width}x{height} px, too thin for buckets in steps of {bucketer.reso_steps} px: "
            "crop it to a less extreme aspect ratio or delete it"
        )
    if not strict:
        return
    if bucketer.enable_bucket and bucketer.no_upscale:
        # Never upscaled here; "far smaller" means less than a quarter of the training area.
        needed = bucketer.resolution / math.sqrt(width * height)
        target = f"resolution {bucketer.resolution}"
        minimum = f"about {math.ceil(bucketer.resolution / MAX_UPSCALE)}x{math.ceil(bucketer.resolution / MAX_UPSCALE)} px of area"
    else:
        needed = assignment.scale
        target = f"its {bucket_w}x{bucket_h} bucket at resolution {bucketer.resolution}"
        min_w = math.ceil(width * needed / MAX_UPSCALE)
        min_h = math.ceil(height * needed / MAX_UPSCALE)
        minimum = f"{min_w}x{min_h} px"
    if needed > MAX_UPSCALE:
        raise DatasetError(
            f"image {path} is {width}x{height} px, far smaller than the resolution: it would need {needed:.1f}x "
            f"upscaling to cover {target} (--strict-image-size allows {MAX_UPSCALE:g}x); use a larger image "
            f"(at least {minimum}), delete it, lower --resolution, or drop --strict-image-size to upscale it as kohya does"
        )


def read_caption(path: Path) -> str:
    """The first line of a caption file, stripped (kohya reads only the first line)."""
    try:
        # utf-8-sig: editors on Windows often start UTF-8 files with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"caption {path} is not UTF-8 text (bad byte at position {err.start}): re-save it as UTF-8"
        ) from None
    control = next((i for i, ch in enumerate(text) if ch < " " and ch not in "\t\r\n"), None)
    if control is not None:  # NUL and friends reach the tokenizer and the metadata silently otherwise
        raise DatasetError(
            f"caption {path} holds a control character (U+{ord(text[control]):04X}) at position {control}: "
            "re-save it as plain UTF-8 text (a UTF-16 file reads as text with NUL bytes)"
        )
    lines = text.splitlines()
    caption = lines[0].strip() if lines else ""
    if not caption:
        raise DatasetError(
            f"caption {path} is empty (kohya reads only its first line): write the caption on the first line, "
            "or delete the file to caption the image with the folder's class tokens"
        )
    return caption


def _warn_caption_extension(concepts: list[Concept], extension: str, warnings: list[Problem]) -> None:
    """A common mistake: captions saved as .caption while the trainer looks for .txt (or back)."""
    if not concepts or any(c.missing_captions < len(c.images) for c in concepts):
        return
    for other in OTHER_CAPTION_EXTENSIONS:
        if other == extension:
            continue
        found = sum(1 for c in concepts for r in c.images if caption_path_for(r.path, other).is_file())
        if found:
            warnings.append(Problem.warning(concepts[0].folder.parent, f"no `{extension}` captions found but {found} `{other}` file(s) exist",
                                            f"pass --caption-extension {other}"))
