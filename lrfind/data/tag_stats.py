"""`lrfind dataset tags`: tag counts per concept folder and overall, as data, then as text.

Pure (the token counter is passed in, as in lrfind.data.check). A missing caption file counts as
the folder's class tokens, as kohya trains it (and as its ss_tag_frequency counts it).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from lrfind.data.check import TOKEN_LIMIT, TOKEN_LIMIT_EXTENDED
from lrfind.data.tags import duplicate_tags, split_tags, tag_key, trigger_position

TOKEN_LIMITS = (TOKEN_LIMIT, 2 * TOKEN_LIMIT, TOKEN_LIMIT_EXTENDED)  # kohya's --max_token_length 75/150/225


@dataclass(frozen=True)
class FolderCaptions:
    folder: str  # "10_mychar"
    class_tokens: str  # "mychar": the caption of an image without a caption file
    captions: tuple[tuple[str, Optional[str]], ...]  # (caption file name, its caption or None if no file)


@dataclass(frozen=True)
class TagCount:
    tag: str
    images: int  # images whose caption has it
    share: float  # images / all images of the folder
    occurrences: int  # kohya's ss_tag_frequency count (a duplicate counts twice)


@dataclass(frozen=True)
class TokenSummary:
    min: int
    median: float
    max: int
    over_75: int
    over_150: int
    over_225: int
    over_75_files: tuple[tuple[str, int], ...]  # (file, tokens), longest first


@dataclass(frozen=True)
class TriggerSummary:
    word: str
    source: str  # "--trigger" or "folder name"
    first: int  # captions where it is the first tag
    later: tuple[tuple[str, int], ...]  # (file, 1-based position) where it is not first
    missing: tuple[str, ...]  # files without it


@dataclass(frozen=True)
class FolderTagReport:
    folder: str
    images: int
    missing_caption_files: tuple[str, ...]
    tags: tuple[TagCount, ...]  # most frequent first
    in_every_image: tuple[str, ...]  # candidates to remove so the trigger word learns them
    duplicates: tuple[tuple[str, tuple[str, ...]], ...]  # (file, tags it holds twice)
    tokens: TokenSummary
    trigger: Optional[TriggerSummary]


@dataclass(frozen=True)
class TagReport:
    dataset: str
    folders: tuple[FolderTagReport, ...]
    overall: FolderTagReport

    def to_dict(self) -> dict:
        return asdict(self)


def _tag_counts(tag_lists: list[list[str]], underscores: bool) -> tuple[TagCount, ...]:
    images: dict[str, int] = {}
    occurrences: dict[str, int] = {}
    spelling: dict[str, str] = {}
    for tags in tag_lists:
        keys = [tag_key(tag, underscores) for tag in tags]
        for tag, key in zip(tags, keys):
            spelling.setdefault(key, tag.lower())
            occurrences[key] = occurrences.get(key, 0) + 1
        for key in set(keys):
            images[key] = images.get(key, 0) + 1
    n = max(len(tag_lists), 1)
    counts = [TagCount(spelling[k], images[k], images[k] / n, occurrences[k]) for k in images]
    return tuple(sorted(counts, key=lambda c: (-c.images, c.tag)))


def _tokens(named_captions: list[tuple[str, str]], count_tokens: Callable[[str], int]) -> TokenSummary:
    lengths = [(name, count_tokens(caption)) for name, caption in named_captions]
    values = [n for _, n in lengths] or [0]
    over = sorted(((name, n) for name, n in lengths if n > TOKEN_LIMIT), key=lambda pair: -pair[1])
    return TokenSummary(min(values), float(statistics.median(values)), max(values),
                        *(sum(1 for v in values if v > limit) for limit in TOKEN_LIMITS), tuple(over))


def _trigger(named_tags: list[tuple[str, list[str]]], word: str, source: str, underscores: bool) -> TriggerSummary:
    positions = [(name, trigger_position(tags, word, underscores)) for name, tags in named_tags]
    return TriggerSummary(
        word=word,
        source=source,
        first=sum(1 for _, p in positions if p == 0),
        later=tuple((name, p + 1) for name, p in positions if p),
        missing=tuple(name for name, p in positions if p is None),
    )


def _folder_report(name: str, named_captions: list[tuple[str, str]], missing: tuple[str, ...],
                   trigger: Optional[tuple[str, str]], count_tokens: Callable[[str], int],
                   underscores: bool) -> FolderTagReport:
    named_tags = [(file, split_tags(caption)) for file, caption in named_captions]
    tags = _tag_counts([t for _, t in named_tags], underscores)
    trigger_key = tag_key(trigger[0], underscores) if trigger else None
    every = tuple(c.tag for c in tags if c.images == len(named_tags) > 1 and tag_key(c.tag, underscores) != trigger_key)
    duplicates = tuple((file, tuple(d)) for file, t in named_tags if (d := duplicate_tags(t, underscores)))
    return FolderTagReport(
        folder=name,
        images=len(named_captions),
        missing_caption_files=missing,
        tags=tags,
        in_every_image=every,
        duplicates=duplicates,
        tokens=_tokens(named_captions, count_tokens),
        trigger=_trigger(named_tags, trigger[0], trigger[1], underscores) if trigger else None,
    )


def build_tag_report(dataset: str, folders: list[FolderCaptions], count_tokens: Callable[[str], int],
                     trigger: Optional[str] = None, underscores_as_spaces: bool = False) -> TagReport:
    """Per folder and overall. Without `trigger`, each folder's is the first word of its class
    tokens (`10_mychar woman` -> `mychar`), the usual kohya naming."""
    cache: dict[str, int] = {}

    def tokens(caption: str) -> int:
        if caption not in cache:
            cache[caption] = count_tokens(caption)
        return cache[caption]

    reports, everything, all_missing = [], [], []
    for folder in folders:
        named = [(f"{folder.folder}/{file}", folder.class_tokens if caption is None else caption)
                 for file, caption in folder.captions]
        missing = tuple(name for (name, _), (_, caption) in zip(named, folder.captions) if caption is None)
        word = (trigger, "--trigger") if trigger else (
            (folder.class_tokens.split()[0], "folder name") if folder.class_tokens.split() else None)
        reports.append(_folder_report(folder.folder, named, missing, word, tokens, underscores_as_spaces))
        everything += named
        all_missing += missing
    overall_trigger = (trigger, "--trigger") if trigger else None
    overall = _folder_report("all folders", everything, tuple(all_missing), overall_trigger, tokens, underscores_as_spaces)
    return TagReport(dataset=dataset, folders=tuple(reports), overall=overall)


def _names(names, shown: int = 5) -> str:
    names = list(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _render_folder(report: FolderTagReport, top: int) -> list[str]:
    t = report.tokens
    median = int(t.median) if t.median == int(t.median) else round(t.median, 1)
    lines = [f"{report.folder}: {report.images} image(s)"
             + (f", {len(report.missing_caption_files)} without a caption file (captioned with the class tokens)"
                if report.missing_caption_files else ""),
             f"  tokens per caption: min {t.min} / median {median} / max {t.max}; "
             f"over 75: {t.over_75}, over 150: {t.over_150}, over 225: {t.over_225}"]
    if t.over_75_files:
        lines.append(f"    over 75 (cut unless --max_token_length 150/225): "
                     + _names(f"{name} ({n})" for name, n in t.over_75_files))
    if report.trigger:
        tr = report.trigger
        lines.append(f"  trigger word {tr.word!r} ({tr.source}): first in {tr.first}, later in {len(tr.later)}, "
                     f"missing in {len(tr.missing)}")
        if tr.later:
            lines.append("    not first: " + _names(f"{name} (tag {pos})" for name, pos in tr.later))
        if tr.missing:
            lines.append("    missing: " + _names(tr.missing))
    if report.in_every_image:
        lines.append("  in every image (remove them so the trigger word learns them): " + ", ".join(report.in_every_image))
    if report.duplicates:
        lines.append("  duplicate tags (--dedupe): " + _names(f"{file} ({', '.join(tags)})" for file, tags in report.duplicates))
    shown = report.tags if top <= 0 else report.tags[:top]
    width = max([len(c.tag) for c in shown] + [3])
    lines.append(f"  {'tag'.ljust(width)}  images  share")
    lines += [f"  {c.tag.ljust(width)}  {c.images:6d}  {c.share:5.0%}" for c in shown]
    if len(shown) < len(report.tags):
        lines.append(f"  … {len(report.tags) - len(shown)} more tag(s) (--top 0 shows all)")
    return lines


def render_tag_report(report: TagReport, top: int = 20) -> str:
    lines = [f"dataset {report.dataset}", ""]
    for folder in report.folders:
        lines += _render_folder(folder, top) + [""]
    if len(report.folders) > 1:
        lines += _render_folder(report.overall, top) + [""]
    lines.append("Put the trigger word first (--trigger WORD) and train with kohya's --shuffle_caption "
                 "--keep_tokens 1: keep_tokens counts comma-separated tags and keeps that many in front.")
    return "\n".join(lines) + "\n"
