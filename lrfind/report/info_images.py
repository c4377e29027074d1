"""Image sections of the report as data: the sample grid (trials x prompts) and final runs' X/Y
grids, each image a base64 PNG data URI so the one HTML file carries everything.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Optional

from lrfind.jsonfiles import finite
from lrfind.report.data import StudyData

MAX_SAMPLE_TRIALS = 12  # best first; more rows make the page heavy and add little
SAMPLE_THUMBNAIL_PX = 256  # longest side in the page; the PNGs on disk stay as they are
XY_GRID_MAX_PX = 2048
SAMPLE_STATES = ("COMPLETE", "PRUNED")


def image_data_uri(path: Path, max_side: int) -> tuple[str, int, int]:
    """The image as `data:image/png;base64,...` (shrunk to max_side), with its width and height."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB") if image.mode not in ("RGB", "RGBA", "L") else image.copy()
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), image.width, image.height


def image_cell(path: Path, max_side: int) -> dict:
    """{"uri", "width", "height", "file"}; a corrupt or unreadable image gets uri None and its error.

    One bad PNG (a crash mid-write by another tool, a truncated copy) must not stop the report:
    the page shows a placeholder for it and says so in the warnings.
    """
    from PIL import Image

    try:
        uri, width, height = image_data_uri(path, max_side)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        return {"uri": None, "width": None, "height": None, "file": str(path),
                "error": f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"}
    return {"uri": uri, "width": width, "height": height, "file": str(path)}


def unreadable_image_warnings(*sections: dict) -> list[dict]:
    """A report warning per image the sample grid or X/Y grid could not read."""
    cells = [cell for section in sections for row in section.get("rows", []) for cell in row["cells"] if cell]
    cells += [grid for section in sections for grid in section.get("grids", [])]
    return [{"kind": "image", "text": f"{cell['file']}: unreadable image ({cell['error']}), shown as a "
                                      "placeholder; regenerate or delete it"}
            for cell in cells if cell.get("uri") is None]


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


def _get_sample_grid_info(data: StudyData) -> dict:
    """Rows = trials (best first), columns = prompts; a cell is a data URI or None."""
    with_samples = [(t, s) for t in _ranked_sample_trials(data) if (s := _sample_paths(data, t))]
    rows, prompts = [], []
    for trial, samples in with_samples[:MAX_SAMPLE_TRIALS]:
        cells: dict[str, dict] = {}
        for index, (path, prompt) in enumerate(samples):
            column = prompt if prompt is not None else f"sample {index}"
            if column not in prompts:
                prompts.append(column)
            cells[column] = image_cell(path, SAMPLE_THUMBNAIL_PX)
        rows.append({"trial": trial.number, "state": trial.state.name,
                     "value": finite(trial.values[0]) if trial.values else None,
                     "clip_i": finite(trial.user_attrs.get("clip_i")), "cells": cells})
    return {"available": bool(rows), "prompts": prompts,
            "rows": [{**row, "cells": [row["cells"].get(p) for p in prompts]} for row in rows],
            "shown": len(rows), "trials_with_samples": len(with_samples)}


def _get_xy_grid_info(data: StudyData) -> dict:
    """Final runs' X/Y grids (rows = saved epochs, columns = LoRA weights) and the suggested epoch."""
    grids = []
    for path in data.xy_grids:
        label = path.parent.name if path.parent != data.study_dir else "final run"
        grids.append({"title": f"{label}: {path.name}", **image_cell(path, XY_GRID_MAX_PX)})
    final = data.final or {}
    epochs = [{"epoch": r.get("epoch"), "val_loss": r.get("val_loss"), "clip_i": r.get("clip_i"),
               "file": r.get("file"), "suggested": r.get("epoch") == final.get("suggested_epoch")}
              for r in final.get("epochs", []) if isinstance(r, dict)]
    return {"available": bool(grids), "grids": grids, "suggested_epoch": final.get("suggested_epoch"),
            "reason": final.get("reason") or final.get("suggested_epoch_reason"), "epochs": epochs}
