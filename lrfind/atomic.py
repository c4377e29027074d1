"""Atomic file writes: write to a temp file in the same folder, fsync, then rename.

A reader (or a crash) never sees half a file, and an existing file is only replaced once the new
one is complete. A full disk (ENOSPC, EDQUOT, or a library's message saying so) while writing
becomes one `DiskFullError` naming the file and its folder, and the temp file is removed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lrfind.errors import DiskFullError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How libraries that do their own I/O say it: safetensors (Rust io::Error), sqlite, tensorboard.
DISK_FULL_TEXTS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122",
                   "database or disk is full")


def is_disk_full(err: BaseException) -> bool:
    """True when `err`, or an exception it was raised from, says the disk (or quota) is full."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, DiskFullError):
            return True
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(err).lower() for text in DISK_FULL_TEXTS):
            return True
        err = err.__cause__ or err.__context__
    return False


def free_megabytes(folder: str | os.PathLike) -> float | None:
    """Free space (MB) on the disk holding `folder` or its nearest existing parent."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free / 1e6
    except OSError:
        return None


def disk_full_error(path: str | os.PathLike) -> DiskFullError:
    path = Path(path)
    free = free_megabytes(path.parent)
    have = f", {free:.0f} MB free there" if free is not None else ""
    return DiskFullError(f"disk full while writing {path.name} ({path.parent}{have}): free space on that "
                         "disk or write to another folder, then run again", path=path)


@contextmanager
def disk_full_as_error(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk inside the block into DiskFullError(path); other errors pass unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:  # noqa: BLE001 - only disk-full errors are translated, the rest re-raised
        if is_disk_full(err):
            raise _first_disk_full_error(err) or disk_full_error(path) from None
        raise


def _first_disk_full_error(err: BaseException) -> DiskFullError | None:
    """The DiskFullError a library's error was raised from (it names the file), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, DiskFullError):
            return err
        err = err.__cause__ or err.__context__
    return None


def _umask() -> int:
    umask = os.umask(0)  # the only way to read it; set straight back
    os.umask(umask)
    return umask


def file_mode() -> int:
    """The mode a plain open() gives a new file under the current umask."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode a plain mkdir() gives a new folder under the current umask."""
    return 0o777 & ~_umask()


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success rename it onto `target`, else delete it."""
    target = Path(target)
    with disk_full_as_error(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            # After writing, not before: writers such as safetensors' save_file replace the file,
            # and mkstemp's 0600 would make files other users (a ComfyUI container) cannot read.
            os.chmod(tmp_path, file_mode())
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, target)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


@contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside `target`; when complete it replaces `target`, else it is removed."""
    target = Path(target)
    with disk_full_as_error(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            try:
                yield tmp
            except DiskFullError as err:  # name the file as it would have been, not its temp folder
                name = Path(err.path).relative_to(tmp) if err.path and tmp in Path(err.path).parents else ""
                raise disk_full_error(target / name) from None
            os.chmod(tmp, folder_mode())  # mkdtemp makes 0700 folders
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def write_to_disk(path: Path, data: bytes) -> None:
    """The one low-level write every atomic write goes through (tests make it fail with ENOSPC)."""
    with open(path, "wb") as fh:
        fh.write(data)


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        write_to_disk(tmp, data)


def write_text(target: str | os.PathLike, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
