"""`lrfind dataset check`: the dataset report as data, then as a plain-text table.

`build_check_report` is pure (it takes the token counter as an argument, so tests need no
tokenizer); `render_check_report` turns the data into text.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from lrfind.data.limits import long_run_warning, repeat_problems, steps_problem
from lrfind.data.problems import Problem
from lrfind.data.steps import epoch_repeats, samples_per_bucket, steps_formula, steps_in_buckets
from lrfind.data.types import Concept, Dataset

# CLIP's window is 77 tokens = 75 caption tokens + start/end. kohya truncates captions at 75 tokens
# unless --max_token_length 150 or 225 (3 windows); beyond 225 even that truncates.
TOKEN_LIMIT = 75
TOKEN_LIMIT_EXTENDED = 225


@dataclass(frozen=True)
class ConceptRow:
    concept: str
    kind: str  # "train" or "reg"
    folder: str
    repeats: int  # the folder's N
    images: int
    missing_captions: int
    upscaled: int  # images enlarged to cover their bucket (kohya does it; > 2x also warns)
    tokens_min: int
    tokens_median: float
    tokens_max: int
    over_75_tokens: int
    over_225_tokens: int
    samples_per_epoch: int  # image-repeats per epoch (reg: kohya's fill rule)
    steps_per_epoch: int  # this folder alone at the batch size


@dataclass(frozen=True)
class BucketRow:
    width: int
    height: int
    train_images: int
    reg_images: int
    samples_per_epoch: int
    steps_per_epoch: int

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class CheckReport:
    dataset: str
    resolution: int
    batch_size: int
    epochs: int
    concepts: tuple[ConceptRow, ...]
    buckets: tuple[BucketRow, ...]
    steps_per_epoch: int  # the whole dataset, as kohya counts it
    total_steps: int
    steps_formula: str
    warnings: tuple[Problem, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def _concept_row(concept: Concept, used: dict, token_counts: list[int], batch_size: int) -> ConceptRow:
    samples = sum(used[r.path, r.is_reg] for r in concept.images)
    per_bucket = samples_per_bucket((r, used[r.path, r.is_reg]) for r in concept.images)
    return ConceptRow(
        concept=concept.name,
        kind="reg" if concept.is_reg else "train",
        folder=concept.folder.name,
        repeats=concept.repeats,
        images=len(concept.images),
        missing_captions=concept.missing_captions,
        upscaled=sum(1 for r in concept.images if r.upscale > 1),
        tokens_min=min(token_counts),
        tokens_median=float(statistics.median(token_counts)),
        tokens_max=max(token_counts),
        over_75_tokens=sum(1 for n in token_counts if n > TOKEN_LIMIT),
        over_225_tokens=sum(1 for n in token_counts if n > TOKEN_LIMIT_EXTENDED),
        samples_per_epoch=samples,
        steps_per_epoch=steps_in_buckets(per_bucket, batch_size),
    )


def _bucket_rows(dataset: Dataset, used_list: list, batch_size: int) -> tuple[BucketRow, ...]:
    train_images = Counter(r.bucket for r in dataset.train_images)
    reg_images = Counter(r.bucket for r in dataset.reg_images)
    samples = samples_per_bucket(used_list)
    buckets = sorted(set(train_images) | set(reg_images))
    return tuple(
        BucketRow(
            width=w,
            height=h,
            train_images=train_images[w, h],
            reg_images=reg_images[w, h],
            samples_per_epoch=samples.get((w, h), 0),
            steps_per_epoch=steps_in_buckets([samples.get((w, h), 0)], batch_size),
        )
        for w, h in buckets
    )


def _token_warnings(rows: list[ConceptRow], dataset: Dataset) -> list[Problem]:
    folders = {c.folder.name: c.folder for c in dataset.concepts + dataset.reg_concepts}
    warnings = []
    for row in rows:
        folder = folders.get(row.folder, row.folder)
        if row.over_225_tokens:
            warnings.append(Problem.warning(
                folder, f"{row.over_225_tokens} caption(s) longer than {TOKEN_LIMIT_EXTENDED} tokens are cut "
                "even with --max_token_length 225", "shorten them (`lrfind dataset tags` shows the long ones)"))
        elif row.over_75_tokens:
            warnings.append(Problem.warning(
                folder, f"{row.over_75_tokens} caption(s) longer than {TOKEN_LIMIT} tokens are cut at {TOKEN_LIMIT}",
                "train with --max_token_length 150 or 225, or shorten them"))
        if row.missing_captions:
            warnings.append(Problem.warning(
                folder, f"{row.missing_captions} image(s) have no caption file and are captioned "
                f"with the folder's class tokens {row.concept!r}, as kohya does", "add caption files if that is not meant"))
    return warnings


def build_check_report(
    dataset: Dataset,
    resolution: int,
    batch_size: int,
    count_tokens: Callable[[str], int],
    epochs: int = 1,
) -> CheckReport:
    """The numbers of `lrfind dataset check` (pure: the caller passes the token counter)."""
    used_list = epoch_repeats(dataset)
    used = {(record.path, record.is_reg): times for record, times in used_list}
    token_cache: dict[str, int] = {}

    def tokens(caption: str) -> int:
        if caption not in token_cache:
            token_cache[caption] = count_tokens(caption)
        return token_cache[caption]

    rows = [
        _concept_row(concept, used, [tokens(r.caption) for r in concept.images], batch_size)
        for concept in dataset.concepts + dataset.reg_concepts
    ]
    steps_per_epoch = steps_in_buckets(samples_per_bucket(used_list), batch_size)
    reg_samples = sum(row.samples_per_epoch for row in rows if row.kind == "reg")
    groups = [(row.images, row.repeats) for row in rows if row.kind == "train"]
    return CheckReport(
        dataset=str(dataset.root),
        resolution=resolution,
        batch_size=batch_size,
        epochs=epochs,
        concepts=tuple(rows),
        buckets=_bucket_rows(dataset, used_list, batch_size),
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * epochs,
        steps_formula=steps_formula(groups, epochs, batch_size, steps_per_epoch * epochs, reg_samples),
        warnings=tuple(dataset.warnings) + tuple(_token_warnings(rows, dataset))
        + tuple(_limit_warnings(dataset, steps_per_epoch * epochs, batch_size)),
    )


def _limit_warnings(dataset: Dataset, total_steps: int, batch_size: int) -> list[Problem]:
    """What `lrfind train`/`probe`/`study` would refuse (lrfind.data.limits), or find suspiciously long."""
    found = [Problem.warning(folder, problem, f"{fix}; train, probe and study refuse it")
             for folder, problem, fix in repeat_problems(dataset)]
    too_many = steps_problem(total_steps)
    if too_many:
        found.append(Problem.warning(dataset.root, *too_many))
    long_run = long_run_warning(total_steps, batch_size, len(dataset.train_images))
    if long_run and not found:
        problem, _, fix = long_run.partition("; ")
        found.append(Problem.warning(dataset.root, problem, fix))
    return found


def _table(header: list[str], rows: list[list], right_align_from: int = 1) -> list[str]:
    # Hand-written rather than pandas' to_string: a few aligned columns do not justify importing
    # pandas (about a second) in a command users run often.
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        parts = [c.ljust(w) if i < right_align_from else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(parts).rstrip()

    return [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]


def _median_text(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def render_check_report(report: CheckReport) -> str:
    """The report as the plain-text tables `lrfind dataset check` prints."""
    lines = [f"dataset {report.dataset}  (resolution {report.resolution}, batch size {report.batch_size})", ""]
    concept_rows = [
        [r.folder, r.kind, r.repeats, r.images, r.missing_captions, r.upscaled,
         f"{r.tokens_min}/{_median_text(r.tokens_median)}/{r.tokens_max}",
         r.over_75_tokens, r.over_225_tokens, r.samples_per_epoch, r.steps_per_epoch]
        for r in report.concepts
    ]
    header = ["folder", "kind", "repeats", "images", "no caption", "upscaled", "tokens min/med/max", ">75", ">225",
              "samples/epoch", "steps/epoch"]
    lines += _table(header, concept_rows, right_align_from=2)
    lines += ["", "buckets"]
    bucket_rows = [[b.label, b.train_images, b.reg_images, b.samples_per_epoch, b.steps_per_epoch] for b in report.buckets]
    lines += _table(["WxH", "train images", "reg images", "samples/epoch", "steps/epoch"], bucket_rows)
    lines += ["", f"steps per epoch: {report.steps_per_epoch} (batches never mix buckets)",
              f"total: {report.steps_formula}"]
    if report.warnings:
        lines += [""] + render_problems(report.warnings, report.dataset)
    return "\n".join(lines) + "\n"


def _short_path(path: str, root: str) -> str:
    # Relative to the dataset folder when inside it: the table stays narrow enough to read.
    try:
        relative = Path(path).relative_to(root)
    except ValueError:
        return path
    return str(relative) if str(relative) != "." else path


def render_problems(problems: tuple[Problem, ...], root: str) -> list[str]:
    """The table `file  severity  problem  fix`, errors first, as lines."""
    errors = sum(1 for p in problems if p.fatal)
    warnings = len(problems) - errors
    title = f"problems: {errors} error(s) (cannot train), {warnings} warning(s)" if errors else f"warnings: {warnings}"
    ordered = sorted(problems, key=lambda p: not p.fatal)
    rows = [[_short_path(p.path, root), "error" if p.fatal else "warning", p.problem, p.fix] for p in ordered]
    return [title] + _table(["file", "severity", "problem", "fix"], rows, right_align_from=4)
