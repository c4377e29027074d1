"""Reading and rewriting a dataset's caption files for `lrfind dataset tags`, with a backup to undo.

A real edit first copies every caption it will change into
`DATASET/.lrfind-caption-backup/<timestamp>/<folder>/<file>` and writes `manifest.json` there
(the SHA-256 of each file before and after); only then does it rewrite the captions, each
atomically (lrfind.atomic: a temp file renamed over the old one). So whatever stops the run, each
caption holds either its old or its new text, and the backup with its manifest already exists:
`undo_last_edit` puts every byte back. The backup folder starts with a dot: lrfind skips it
silently, kohya skips it as a folder without an `N_` prefix. Images are never opened for writing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lrfind import atomic
from lrfind.config import IMAGE_EXTENSIONS
from lrfind.data.kohya import caption_path_for, concept_folders
from lrfind.data.tag_stats import FolderCaptions
from lrfind.data.tags import CaptionText, TagEdits, edit_caption
from lrfind.errors import DatasetError

BACKUP_DIR = ".lrfind-caption-backup"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CaptionFile:
    image: Path
    path: Path  # the caption file (it may not exist)
    raw: Optional[bytes]  # None: no caption file; kohya captions the image with the class tokens
    text: Optional[CaptionText]


@dataclass(frozen=True)
class ConceptFolder:
    folder: Path
    class_tokens: str
    files: tuple[CaptionFile, ...]

    def captions(self) -> FolderCaptions:
        return FolderCaptions(self.folder.name, self.class_tokens,
                              tuple((f.path.name, f.text.caption if f.text else None) for f in self.files))


@dataclass(frozen=True)
class CaptionChange:
    path: Path
    old: bytes
    new: bytes
    old_caption: str
    new_caption: str


def _decode(path: Path, raw: bytes) -> CaptionText:
    try:
        return CaptionText.parse(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DatasetError(f"caption {path} is not UTF-8 text (bad byte at position {err.start}): re-save it as UTF-8") from None


def read_concepts(root: Path, caption_extension: str, concept: Optional[str] = None) -> list[ConceptFolder]:
    """The `N_name` folders (or those named by `concept`: `10_mychar woman`, `mychar woman` or `mychar`) with the
    caption file of each image. Any caption that is not UTF-8 is an error before anything is done."""
    folders = concept_folders(root, "dataset folder", [])
    if concept is not None:
        # The folder's name, its class tokens, or their first word (the usual trigger word).
        chosen = [f for f in folders if concept in (f[0].name, f[2], (f[2].split() or [""])[0])]
        if not chosen:
            names = ", ".join(f[0].name for f in folders)
            raise DatasetError(f"--concept {concept!r} is not a concept folder of {root}: choose one of {names}")
        folders = chosen
    result, errors = [], []
    for folder, _repeats, class_tokens in folders:
        files = []
        for image in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
            path = caption_path_for(image, caption_extension)
            raw = path.read_bytes() if path.is_file() else None
            try:
                text = _decode(path, raw) if raw is not None else None
            except DatasetError as err:
                errors.append(str(err))
                continue
            files.append(CaptionFile(image, path, raw, text))
        result.append(ConceptFolder(folder, class_tokens, tuple(files)))
    if errors:
        more = f" ({len(errors) - 1} more caption(s) are not UTF-8 either)" if len(errors) > 1 else ""
        raise DatasetError(errors[0] + more + "; nothing was changed")
    return result


def plan_changes(concepts: list[ConceptFolder], edits: TagEdits) -> list[CaptionChange]:
    """The caption files whose first line the edits change (other lines and a BOM are kept)."""
    changes = []
    for concept in concepts:
        for file in concept.files:
            if file.text is None:
                continue
            new_caption = edit_caption(file.text.caption, edits)
            if new_caption != file.text.caption:
                new = file.text.with_caption(new_caption).encode("utf-8")
                changes.append(CaptionChange(file.path, file.raw, new, file.text.caption, new_caption))
    return changes


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _new_backup_folder(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, n = root / BACKUP_DIR / stamp, 1
    while folder.exists():
        n += 1
        folder = root / BACKUP_DIR / f"{stamp}-{n}"
    return folder


def write_caption(path: Path, data: bytes) -> None:
    """One caption, atomically (a module attribute, so a test can make it crash mid-edit)."""
    atomic.write_bytes(path, data)


def apply_changes(root: Path, changes: list[CaptionChange]) -> Path:
    """Back up the old captions (manifest last), then write the new ones; returns the backup folder."""
    backup = _new_backup_folder(root)
    entries = []
    for change in changes:
        relative = change.path.relative_to(root)
        atomic.write_bytes(backup / relative, change.old)
        entries.append({"path": relative.as_posix(), "old_sha256": _sha256(change.old), "new_sha256": _sha256(change.new)})
    # The manifest marks the backup complete: until it exists no caption has been touched.
    atomic.write_json(backup / MANIFEST, {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "files": entries})
    for change in changes:
        write_caption(change.path, change.new)
    return backup


def _latest_backup(root: Path) -> Path:
    folders = sorted(p for p in (root / BACKUP_DIR).glob("*") if (p / MANIFEST).is_file()) if (root / BACKUP_DIR).is_dir() else []
    if not folders:
        raise DatasetError(f"no caption backup in {root / BACKUP_DIR}: nothing to undo (only edits made by "
                           "`lrfind dataset tags` can be undone)")
    return folders[-1]


def undo_last_edit(root: Path) -> tuple[Path, list[Path]]:
    """Restore the captions of the newest backup byte for byte, then delete that backup (so the
    next undo goes one edit further back). Refuses, changing nothing, if a caption was changed
    since by something else, or the backup is damaged."""
    backup = _latest_backup(root)
    entries = json.loads((backup / MANIFEST).read_text(encoding="utf-8"))["files"]
    restore = []
    for entry in entries:
        target, saved = root / entry["path"], backup / entry["path"]
        original = saved.read_bytes() if saved.is_file() else None
        if original is None or _sha256(original) != entry["old_sha256"]:
            raise DatasetError(f"backup copy {saved} is missing or damaged: restore {target} by hand; nothing was changed")
        current = target.read_bytes() if target.is_file() else None
        # Old: this edit never reached it (a crash mid-edit); new: our edit. Anything else is
        # someone else's later change, which undoing would destroy.
        if current is not None and _sha256(current) not in (entry["old_sha256"], entry["new_sha256"]):
            raise DatasetError(f"caption {target} changed after the edit of {backup.name}: undoing would lose that change; "
                               f"copy it aside or restore it by hand from {saved}; nothing was changed")
        restore.append((target, original))
    for target, original in restore:
        atomic.write_bytes(target, original)
    shutil.rmtree(backup)
    if not any((root / BACKUP_DIR).iterdir()):
        (root / BACKUP_DIR).rmdir()
    return backup, [target for target, _ in restore]
