"""Output places checked before work starts: writable folders, and enough free space.

Every command calls these at its start (before loading a model or training), so a folder that
is a file, a read-only folder, or a disk too small for what the run will write is one
`ConfigError` line, not a traceback after the first epoch. The checks create nothing: a probe
file is made (and removed) in the nearest existing folder, which is what a later mkdir and
write would need. The size estimates are pure arithmetic (no torch), with a margin.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from lrfind.errors import ConfigError
from lrfind.optimizers import optimizer_entries

MB = 1_000_000
MARGIN = 1.25  # estimates are upper bounds already; the margin covers metadata, logs, rounding
EXTRA_BYTES = 8 * MB  # JSON records, TensorBoard events, HTML pages, temp files during a rename
SAVE_BYTES = {"fp16": 2, "bf16": 2, "float": 4, "fp32": 4}


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_writable_dir(path: str | os.PathLike, option: str) -> None:
    """ConfigError (one line naming `option` and `path`) unless `path` is or can become a folder
    that this process can write into. Creates nothing."""
    path = Path(path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        what = "is a file, not a folder" if existing == path.absolute() else f"cannot be created: {existing} is a file"
        raise ConfigError(f"{option} {path}: {what}; choose another folder or move the file away")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ConfigError(f"{option} {path}: cannot write in {existing} ({err.strerror or err}); choose a folder "
                          "you can write to, or fix its permissions") from None


def check_writable_file(path: str | os.PathLike, option: str) -> None:
    """Like check_writable_dir for a file to be written: not a folder, and its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder, not a file; give a file name")
    check_writable_dir(path.parent, option)


@dataclass(frozen=True)
class Need:
    """`bytes` a run will write under `path`, which the user chose with `option`."""

    path: Path
    bytes: int
    option: str


def check_free_space(needs: Iterable[Need]) -> None:
    """ConfigError unless each disk has the free space the needs on it add up to."""
    by_disk: dict[int, list[Need]] = {}
    for need in needs:
        existing = _nearest_existing(Path(need.path))
        by_disk.setdefault(os.stat(existing).st_dev, []).append(Need(existing, need.bytes, need.option))
    for group in by_disk.values():
        total = sum(n.bytes for n in group)
        free = shutil.disk_usage(group[0].path).free
        if total > free:
            first = max(group, key=lambda n: n.bytes)
            raise ConfigError(f"not enough free space in {first.path}: need ≈{total / MB:.0f} MB, have "
                              f"{free / MB:.0f} MB; free space or choose another {first.option}")


def with_margin(estimate: float) -> int:
    return int(math.ceil(estimate * MARGIN)) + EXTRA_BYTES


def png_bytes(width: int, height: int) -> int:
    """Upper bound of one RGB PNG (noise-like samples barely compress)."""
    return 3 * width * height + 4096


def lora_file_bytes(lora_params: int, save_precision: str) -> int:
    return lora_params * SAVE_BYTES[save_precision] + 64 * 1024  # + header and ss_ metadata


def state_bytes(lora_params: int, optimizer: str) -> int:
    """A resumable state: the LoRA in fp32 and the optimizer's fp32 state."""
    # fp32 tensors per trained parameter in the optimizer's state (its lrfind.optimizers entry, by
    # canonical name); other names count as the largest.
    entry = next((e for e in optimizer_entries() if e.name.lower() == optimizer.lower()), None)
    slots = entry.state_slots if entry else max(e.state_slots for e in optimizer_entries())
    return lora_params * 4 * (1 + slots) + 64 * 1024


def train_output_bytes(lora_params: int, save_precision: str, lora_files: int, save_state: bool,
                       optimizer: str, sample_images: int, resolution: int, xy_grid_images: int = 0) -> int:
    """What `lrfind train` writes to --output-dir, with the margin.

    lora_files: saved epochs + the final file. With --save-state two states exist at the peak
    (the new one is complete before the old one is removed). Samples and the X/Y grid at the
    run's resolution.
    """
    total = lora_files * lora_file_bytes(lora_params, save_precision)
    if save_state:
        total += 2 * state_bytes(lora_params, optimizer)
    total += (sample_images + xy_grid_images) * png_bytes(resolution, resolution)
    return with_margin(total)


def cache_bytes(latent_entries: int, resolution: int, text_entries: int, text_tokens: int, text_width: int) -> int:
    """Latent ([4, H/8, W/8]) and text ([tokens, width]) cache entries in float32, with the margin."""
    latent = 4 * (resolution // 8) ** 2 * 4 + 4096
    text = text_tokens * text_width * 4 + 4096
    return with_margin(latent_entries * latent + text_entries * text)


def study_output_bytes(trials: int, lora_params_max: int, sample_images: int, resolution: int) -> int:
    """A study's trial folders: an fp16 LoRA and the samples per trial, with the margin."""
    per_trial = lora_file_bytes(lora_params_max, "fp16") + sample_images * png_bytes(resolution, resolution)
    return with_margin(trials * per_trial)


def saved_lora_files(epochs: int, save_every_n_epochs: Optional[int]) -> int:
    """LoRA files a run keeps: every n-th epoch before the last, and the final file."""
    return (len(range(save_every_n_epochs, epochs, save_every_n_epochs)) if save_every_n_epochs else 0) + 1
