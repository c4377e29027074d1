"""Final runs: their X/Y grids (rows = saved epochs, columns = LoRA weights), the saved epochs'
scores and the suggested epoch (NAME_final.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lrfind.report.data import StudyData
from lrfind.report.sections.common import Fragment, ImageCell, display_size, esc, image_cell, section, unreadable

XY_GRID_MAX_PX = 2048
XY_DISPLAY_PX = 768


@dataclass(frozen=True)
class XYGrid:
    title: str  # the run's folder and the file's name
    image: ImageCell


@dataclass(frozen=True)
class SavedEpoch:
    epoch: Optional[int]
    val_loss: Optional[float]
    clip_i: Optional[float]
    file: Optional[str]
    suggested: bool


@dataclass(frozen=True)
class XYGridInfo:
    available: bool
    grids: list[XYGrid]
    suggested_epoch: Optional[int]
    reason: Optional[str]  # why that epoch
    epochs: list[SavedEpoch]


def _get_xy_grid_info(data: StudyData) -> XYGridInfo:
    grids = []
    for path in data.xy_grids:
        label = path.parent.name if path.parent != data.study_dir else "final run"
        grids.append(XYGrid(title=f"{label}: {path.name}", image=image_cell(path, XY_GRID_MAX_PX)))
    final = data.final or {}
    epochs = [SavedEpoch(epoch=r.get("epoch"), val_loss=r.get("val_loss"), clip_i=r.get("clip_i"),
                         file=r.get("file"), suggested=r.get("epoch") == final.get("suggested_epoch"))
              for r in final.get("epochs", []) if isinstance(r, dict)]
    return XYGridInfo(available=bool(grids), grids=grids, suggested_epoch=final.get("suggested_epoch"),
                      reason=final.get("reason") or final.get("suggested_epoch_reason"), epochs=epochs)


def _epochs_table(rows: list[SavedEpoch]) -> str:
    """Saved epochs of the final run: validation loss, CLIP-I and file; the suggested one in bold."""
    if not rows:
        return ""

    def number(value) -> str:
        return "" if value is None else f"{value:.5g}"

    cells = "".join(
        f'<tr{" class=suggested" if r.suggested else ""}><td>{esc(r.epoch)}</td>'
        f'<td>{esc(number(r.val_loss))}</td><td>{esc(number(r.clip_i))}</td><td>{esc(r.file)}</td></tr>'
        for r in rows)
    return (f'<table class="kv epochs"><tr><th>epoch</th><th>validation loss</th><th>CLIP-I</th>'
            f'<th>LoRA file</th></tr>{cells}</table>')


def _grid_figure(grid: XYGrid) -> str:
    image = grid.image
    shown = (f'<img src="{image.uri}" {display_size(image, XY_DISPLAY_PX)} alt="X/Y grid">' if image.uri
             else unreadable(image))
    return f'<figure class="xy"><figcaption>{esc(grid.title)}</figcaption>{shown}</figure>'


def xy_grid_html(info: XYGridInfo) -> Fragment:
    if not info.available:
        return Fragment("")
    suggested = ""
    if info.suggested_epoch is not None:
        suggested = f"<p><b>Suggested epoch: {esc(info.suggested_epoch)}</b> {esc(info.reason or '')}</p>"
    return section("xy-grid", "Final run: X/Y grid", "rows: saved epochs; columns: LoRA weight",
                   suggested + _epochs_table(info.epochs) + "".join(_grid_figure(g) for g in info.grids))
