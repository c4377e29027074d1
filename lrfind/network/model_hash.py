"""kohya's base-model hashes for a LoRA file's ss_sd_model_hash / ss_new_sd_model_hash.

As sd-scripts' `train_util.model_hash` / `calculate_sha256` (the webui's old and new checkpoint
hashes): old = first 8 hex digits of sha256 of the 64 KiB at offset 1 MiB; new = sha256 of the
whole file. For a folder (a diffusers model) kohya writes "IsADirectory" for both, and for a
name that is no path (a hub id, lrfind's `tiny`) neither key; lrfind does the same, so a file
says what kohya's would. Hashes of a file are computed once per process (size and mtime checked).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

FOLDER_HASH = "IsADirectory"  # kohya's value for a folder


@lru_cache(maxsize=8)
def _file_hashes(path: str, size: int, mtime_ns: int) -> tuple[str, str]:
    old, new = hashlib.sha256(), hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(0x100000)
        old.update(handle.read(0x10000))
        handle.seek(0)
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            new.update(chunk)
    return old.hexdigest()[:8], new.hexdigest()


def sd_model_hashes(model: str | os.PathLike) -> dict[str, str]:
    """{"ss_sd_model_hash", "ss_new_sd_model_hash"} for the base model, or {} (see above)."""
    path = Path(model)
    if path.is_dir():
        return {"ss_sd_model_hash": FOLDER_HASH, "ss_new_sd_model_hash": FOLDER_HASH}
    if not path.is_file():
        return {}
    stat = path.stat()
    old, new = _file_hashes(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return {"ss_sd_model_hash": old, "ss_new_sd_model_hash": new}
