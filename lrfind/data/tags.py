"""Caption tags as kohya's trainer and the taggers write them, and the edits `lrfind dataset tags` makes.

Pure: no torch, no file I/O. A caption is the first line of its file (kohya reads no more); its tags
are the comma-separated parts, trimmed, empty parts dropped (kohya's `caption.split(",")` +
`strip()`, as in its shuffle/keep_tokens and ss_tag_frequency code). Two tags are the same tag when
they match ignoring case (CLIP's tokenizer lowercases everything, and kohya's ss_tag_frequency
counts lowercased tags); `long_hair` and `long hair` are the same only with `underscores_as_spaces`
(CLIP reads them as different tokens, and taggers write either).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from pydantic import field_validator, model_validator

from lrfind.config import StrictModel

TAG_SEPARATOR = ", "
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
# A1111/ComfyUI prompt weights. `\(` and `\)` are literal parentheses (taggers escape them, e.g.
# `hatsune miku \(cosplay\)`) and are kept. Innermost groups first, so nesting unwraps in a loop.
_WEIGHTED = re.compile(r"(?<!\\)\(((?:[^()\\]|\\.)*?)\s*:\s*" + _NUMBER + r"\s*\)")
_EMPHASIS = re.compile(r"(?<!\\)\(((?:[^()\\]|\\.)*)\)|(?<!\\)\[((?:[^\[\]\\]|\\.)*)\]")
_FIRST_LINE = re.compile(r"([^\r\n]*)(\r\n|\n|\r|)(.*)", re.DOTALL)  # kohya's readlines(): \n, \r\n, \r


def split_tags(caption: str) -> list[str]:
    """The tags of a caption: comma-separated, trimmed, empty ones dropped (as kohya splits)."""
    return [tag.strip() for tag in caption.split(",") if tag.strip()]


def tag_key(tag: str, underscores_as_spaces: bool = False) -> str:
    """What makes two tags the same: case never matters; underscores only when asked."""
    key = tag.strip().lower()
    if underscores_as_spaces:
        key = " ".join(key.replace("_", " ").split())
    return key


def strip_weights(caption: str) -> str:
    """`(tag:1.2)` -> `tag`, `((tag))` and `[tag]` -> `tag`; escaped `\\(` `\\)` stay."""
    previous = None
    while previous != caption:
        previous = caption
        caption = _WEIGHTED.sub(lambda m: m.group(1), caption)
        caption = _EMPHASIS.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), caption)
    return caption


@dataclass(frozen=True)
class CaptionText:
    """A caption file's text split where kohya splits it: the first line is the caption; a
    byte-order mark and everything after the first line are kept byte for byte when it is edited."""

    bom: bool
    first_line: str
    line_end: str
    rest: str

    @classmethod
    def parse(cls, text: str) -> "CaptionText":
        bom = text.startswith("\ufeff")
        first, end, rest = _FIRST_LINE.match(text[1:] if bom else text).groups()
        return cls(bom, first, end, rest)

    @property
    def caption(self) -> str:
        return self.first_line.strip()

    def with_caption(self, caption: str) -> str:
        return ("\ufeff" if self.bom else "") + caption + self.line_end + self.rest


def _tags_of(text: str) -> list[str]:
    # `--remove "a, b"`: a comma inside one value separates tags, as in a caption.
    return split_tags(text)


class TagEdits(StrictModel):
    """What `lrfind dataset tags` changes in each caption, applied in this order: strip weights,
    replace, remove, dedupe, trigger word first."""

    remove: tuple[str, ...] = ()
    replace: tuple[tuple[str, str], ...] = ()
    trigger: Optional[str] = None
    dedupe: bool = False
    strip_weights: bool = False
    underscores_as_spaces: bool = False

    @field_validator("remove")
    @classmethod
    def _remove(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        tags = tuple(tag for value in values for tag in _tags_of(value))
        if values and not tags:
            raise ValueError("--remove needs at least one tag, e.g. --remove 'blue eyes'")
        return tags

    @field_validator("replace")
    @classmethod
    def _replace(cls, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for old, new in pairs:
            if len(_tags_of(old)) != 1:
                raise ValueError(f"--replace {old}={new}: OLD must be one tag (no commas, not empty)")
            if not _tags_of(new):
                raise ValueError(f"--replace {old}={new}: NEW is empty; to delete the tag use --remove {old!r}")
        return tuple((old.strip(), new.strip()) for old, new in pairs)

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and len(_tags_of(value)) != 1:
            raise ValueError(f"--trigger {value!r} must be one tag (no commas, not empty), e.g. --trigger mychar")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _trigger_not_removed(self) -> "TagEdits":
        if self.trigger is not None:
            key = self.key(self.trigger)
            if key in {self.key(tag) for tag in self.remove}:
                raise ValueError(f"--trigger {self.trigger!r} is also in --remove: keep one of them")
        return self

    @property
    def any(self) -> bool:
        return bool(self.remove or self.replace or self.trigger or self.dedupe or self.strip_weights)

    def key(self, tag: str) -> str:
        return tag_key(tag, self.underscores_as_spaces)


def edit_tags(tags: list[str], edits: TagEdits) -> list[str]:
    """The tags after replace, remove, dedupe and trigger (strip_weights works on the caption)."""
    replacements = {edits.key(old): _tags_of(new) for old, new in edits.replace}
    out: list[str] = []
    for tag in tags:
        out.extend(replacements.get(edits.key(tag), [tag]))
    removed = {edits.key(tag) for tag in edits.remove}
    out = [tag for tag in out if edits.key(tag) not in removed]
    if edits.dedupe:
        seen: set[str] = set()
        kept = []
        for tag in out:
            if edits.key(tag) not in seen:
                seen.add(edits.key(tag))
                kept.append(tag)
        out = kept
    if edits.trigger is not None:
        # First, in the user's spelling. kohya's --keep_tokens 1 then keeps it first when
        # --shuffle_caption shuffles the rest (keep_tokens counts comma-separated tags).
        out = [edits.trigger] + [tag for tag in out if edits.key(tag) != edits.key(edits.trigger)]
    return out


def edit_caption(caption: str, edits: TagEdits) -> str:
    """The new caption, or `caption` itself (unchanged, not even re-spaced) when no tag changes."""
    stripped = strip_weights(caption) if edits.strip_weights else caption
    tags = split_tags(stripped)
    new_tags = edit_tags(tags, edits)
    if stripped == caption and new_tags == tags:
        return caption
    return TAG_SEPARATOR.join(new_tags)


def duplicate_tags(tags: list[str], underscores_as_spaces: bool = False) -> list[str]:
    """Tags that appear more than once in one caption (each named once, first spelling)."""
    seen: dict[str, int] = {}
    first: dict[str, str] = {}
    for tag in tags:
        key = tag_key(tag, underscores_as_spaces)
        seen[key] = seen.get(key, 0) + 1
        first.setdefault(key, tag)
    return [first[key] for key, count in seen.items() if count > 1]


def trigger_position(tags: list[str], trigger: str, underscores_as_spaces: bool = False) -> Optional[int]:
    """0-based index of the trigger word among the tags, None if absent."""
    key = tag_key(trigger, underscores_as_spaces)
    for index, tag in enumerate(tags):
        if tag_key(tag, underscores_as_spaces) == key:
            return index
    return None
