"""The sample grid: rows = trials (best first), columns = validation prompts; each image a PNG
data URI, so the one HTML file carries everything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lrfind.jsonfiles import finite
from lrfind.report.data import StudyData
from lrfind.report.sections.common import Fragment, ImageCell, display_size, esc, image_cell, section, unreadable

MAX_SAMPLE_TRIALS = 12  # best first; more rows make the page heavy and add little
SAMPLE_THUMBNAIL_PX = 256  # longest side in the page; the PNGs on disk stay as they are
SAMPLE_DISPLAY_PX = 128  # enlarge smaller samples to about this (whole multiples, pixelated)
SAMPLE_STATES = ("COMPLETE", "PRUNED")


@dataclass(frozen=True)
class SampleRow:
    trial: int
    state: str
    value: Optional[float]
    clip_i: Optional[float]
    cells: list[Optional[ImageCell]]  # one per prompt, None where the trial has no sample of it


@dataclass(frozen=True)
class SampleGridInfo:
    available: bool
    prompts: list[str]
    rows: list[SampleRow]
    shown: int
    trials_with_samples: int


def _prompt_of(path: Path) -> Optional[str]:
    """The prompt that lrfind.scoring.samples.save_samples writes into the PNG's text chunk."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get("prompt")
    except (OSError, ValueError, SyntaxError, EOFError):
        return None


def _sample_paths(data: StudyData, trial) -> list[tuple[Path, Optional[str]]]:
    """(path, prompt) per sample: the trial's `samples` attribute, else trials/<n>/samples/*.png."""
    entries = trial.user_attrs.get("samples") or []
    found = []
    for entry in entries if isinstance(entries, list) else []:
        rel = entry.get("path") if isinstance(entry, dict) else entry
        prompt = entry.get("prompt") if isinstance(entry, dict) else None
        if isinstance(rel, str) and (data.study_dir / rel).is_file():
            found.append((data.study_dir / rel, prompt))
    if not found:
        folder = data.study_dir / "trials" / str(trial.number) / "samples"
        found = [(p, None) for p in sorted(folder.glob("*.png"))] if folder.is_dir() else []
    return [(path, prompt or _prompt_of(path)) for path, prompt in found]


def _ranked_sample_trials(data: StudyData) -> list:
    def key(trial):
        value = finite(trial.values[0]) if trial.values else None
        sign = 1 if data.directions[0] == "minimize" else -1
        return (value is None, sign * value if value is not None else 0.0, trial.number)

    return sorted((t for t in data.trials if t.state.name in SAMPLE_STATES), key=key)


def _get_sample_grid_info(data: StudyData) -> SampleGridInfo:
    with_samples = [(t, s) for t in _ranked_sample_trials(data) if (s := _sample_paths(data, t))]
    by_trial, prompts = [], []
    for trial, samples in with_samples[:MAX_SAMPLE_TRIALS]:
        cells: dict[str, ImageCell] = {}
        for index, (path, prompt) in enumerate(samples):
            column = prompt if prompt is not None else f"sample {index}"
            if column not in prompts:
                prompts.append(column)
            cells[column] = image_cell(path, SAMPLE_THUMBNAIL_PX)
        by_trial.append((trial, cells))
    rows = [SampleRow(trial=trial.number, state=trial.state.name,
                      value=finite(trial.values[0]) if trial.values else None,
                      clip_i=finite(trial.user_attrs.get("clip_i")), cells=[cells.get(p) for p in prompts])
            for trial, cells in by_trial]
    return SampleGridInfo(available=bool(rows), prompts=prompts, rows=rows, shown=len(rows),
                          trials_with_samples=len(with_samples))


def _sample_cell(prompt: str, cell: Optional[ImageCell]) -> str:
    if not cell:
        return "<td></td>"
    if cell.uri is None:
        return f"<td>{unreadable(cell)}</td>"
    return (f'<td><img src="{cell.uri}" {display_size(cell, SAMPLE_DISPLAY_PX)} alt="{esc(prompt)}" '
            f'title="{esc(prompt)}"></td>')


def samples_html(info: SampleGridInfo) -> Fragment:
    if not info.available:
        return section("samples", "Samples", "no trial has saved samples yet")
    head = "".join(f"<th>{esc(p)}</th>" for p in info.prompts)
    rows = []
    for row in info.rows:
        value = f"{row.value:.4g}" if row.value is not None else "—"
        label = f"trial {row.trial}<br>{esc(row.state.lower())}<br>{esc(value)}"
        cells = "".join(_sample_cell(p, cell) for p, cell in zip(info.prompts, row.cells))
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    caption = (f"Rows: trials, best first ({info.shown} of {info.trials_with_samples} with samples); "
               "columns: validation prompts (same seeds in every trial).")
    table = f'<div class="wide"><table class="samples"><tr><th></th>{head}</tr>{"".join(rows)}</table></div>'
    return section("samples", "Samples", caption, table)
