"""After the final run: an X/Y grid of saved epochs x LoRA weights, and a suggested epoch.

Picking the epoch (and the weight to use it at) is what people do by eye from such grids today;
`suggest_epoch` gives a starting point from the numbers. Every image of the grid comes from
lrfind.network.generate_images with the same prompt and seed, so a row shows what training added
by that epoch and a column what the LoRA weight does.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from lrfind.atomic import write_bytes
from lrfind.network import generate_images, load_lora
from lrfind.study.epoch_sweep import EPOCH_MIN_GAIN, best_epoch

DEFAULT_WEIGHTS = (0.4, 0.6, 0.8, 1.0)
LABEL_PAD = 4
TILE_GAP = 2  # white lines between tiles: neighbouring images are easier to tell apart
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)


@dataclass(frozen=True)
class GridLayout:
    """Where each tile goes: one section per prompt, stacked; rows = epochs, columns = weights."""

    sections: int
    rows: int
    cols: int
    tile: tuple[int, int]  # (width, height)
    label_width: int  # left margin holding the row labels
    header_height: int  # height of the column labels / of a section's prompt line

    @property
    def section_height(self) -> int:
        # prompt line, weight labels, tiles with gaps between them and below the last row
        return 2 * self.header_height + self.rows * (self.tile[1] + TILE_GAP)

    @property
    def size(self) -> tuple[int, int]:
        return self.label_width + self.cols * (self.tile[0] + TILE_GAP) - TILE_GAP, self.sections * self.section_height

    def tile_box(self, section: int, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of one tile, for Image.paste / Image.crop."""
        left = self.label_width + col * (self.tile[0] + TILE_GAP)
        top = section * self.section_height + 2 * self.header_height + row * (self.tile[1] + TILE_GAP)
        return left, top, left + self.tile[0], top + self.tile[1]


def _tile_size(size) -> tuple[int, int]:
    width, height = (size, size) if isinstance(size, int) else size
    if width % 8 or height % 8 or width <= 0 or height <= 0:
        raise ValueError(f"grid image size {width}x{height} must be positive multiples of 8 (the VAE's factor)")
    return int(width), int(height)


def _fit(draw, text: str, font, width: int) -> str:
    """The text, cut with '...' to fit `width` pixels (the default font may lack an ellipsis glyph)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _draw_labels(image, layout: GridLayout, epochs, weights, prompts_seeds) -> None:
    from PIL import ImageDraw, ImageFont

    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    grid_width = layout.size[0] - 2 * LABEL_PAD
    for section, (prompt, seed) in enumerate(prompts_seeds):
        top = section * layout.section_height
        title = _fit(draw, f"seed {seed}: {prompt}", font, grid_width)
        draw.text((LABEL_PAD, top + LABEL_PAD), title, fill=INK, font=font)
        for col, weight in enumerate(weights):
            left = layout.tile_box(section, 0, col)[0]
            label = _fit(draw, f"weight {weight:g}", font, layout.tile[0] - LABEL_PAD)
            draw.text((left + LABEL_PAD, top + layout.header_height + LABEL_PAD), label, fill=INK, font=font)
        for row, epoch in enumerate(epochs):
            box = layout.tile_box(section, row, 0)
            draw.text((LABEL_PAD, box[1] + LABEL_PAD), f"epoch {epoch}", fill=INK, font=font)


def grid_layout(epochs: Sequence[int], weights: Sequence[float], sections: int, tile: tuple[int, int]) -> GridLayout:
    """The layout for these labels with PIL's default font."""
    from PIL import ImageFont

    font = ImageFont.load_default()
    text_bottom = font.getbbox("Epoch weight 0123456789g")[3]
    label_width = max(int(math.ceil(font.getlength(f"epoch {e}"))) for e in epochs) + 2 * LABEL_PAD
    return GridLayout(sections=sections, rows=len(epochs), cols=len(weights), tile=tile,
                      label_width=label_width, header_height=int(text_bottom) + 2 * LABEL_PAD)


def xy_grid(components, lora_files: Sequence[tuple[int, str | os.PathLike]], weights: Sequence[float] = DEFAULT_WEIGHTS,
            *, prompts_seeds: Sequence[tuple[str, int]], size=512, steps: int = 20, guidance_scale: float = 7.5,
            negative_prompt: str = "", clip_skip: int = 1, max_token_length: int = 75):
    """One PIL image: per (prompt, seed) a section with rows = epochs (ascending) and columns = weights.

    `lora_files` are (epoch, kohya LoRA file) pairs, e.g. the run's NAME-000002.safetensors ...
    A weight of 0 gives the base model's image (handy as a reference column).
    """
    from PIL import Image

    if not lora_files or not weights or not prompts_seeds:
        raise ValueError("an X/Y grid needs at least one LoRA file, one weight and one (prompt, seed)")
    rows = sorted(lora_files, key=lambda pair: pair[0])
    tile = _tile_size(size)
    layout = grid_layout([e for e, _ in rows], weights, len(prompts_seeds), tile)
    grid = Image.new("RGB", layout.size, BACKGROUND)
    prompts, seeds = [p for p, _ in prompts_seeds], [s for _, s in prompts_seeds]
    for row, (_, path) in enumerate(rows):
        state_dict, _ = load_lora(path)  # once per file, not once per weight
        for col, weight in enumerate(weights):
            images = generate_images(components, prompts, seeds, width=tile[0], height=tile[1], steps=steps,
                                     guidance_scale=guidance_scale, negative_prompt=negative_prompt,
                                     loras=[(state_dict, float(weight))], clip_skip=clip_skip,
                                     max_token_length=max_token_length)
            for section, image in enumerate(images):
                grid.paste(image.convert("RGB"), layout.tile_box(section, row, col)[:2])
    _draw_labels(grid, layout, [e for e, _ in rows], weights, prompts_seeds)
    return grid


def save_xy_grid(image, path: str | os.PathLike) -> Path:
    """Write the grid as PNG atomically (a crash never leaves half an image)."""
    path = Path(path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())
    return path


# --- the suggested epoch (pure) -------------------------------------------------------------------


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _drift_weighed(rows: Sequence[dict]) -> Optional[tuple[int, str]]:
    """A run with held-out images and drift at every epoch (--validation-split): the study's epoch
    rule (lrfind.study.epoch_sweep.best_epoch), a later epoch that drifts further kept only when it
    lowers the held-out loss by more than EPOCH_MIN_GAIN. None when some epoch has no drift."""
    scored = [(int(r["epoch"]), _number(r.get("val_loss")), _number(r.get("drift"))) for r in rows]
    scored = [row for row in scored if row[1] is not None]
    if not scored or any(drift is None for _, _, drift in scored):
        return None
    best = best_epoch([(e, loss) for e, loss, _ in scored], {e: e for e, _, _ in scored},
                      {e: drift for e, _, drift in scored})
    if best is None:
        return None
    epoch, loss = best
    lowest = min(scored, key=lambda t: (t[1], t[0]))
    if lowest[0] == epoch:
        return epoch, f"epoch {epoch}: lowest held-out loss {loss:.5g}"
    return epoch, (f"epoch {epoch}: held-out loss {loss:.5g}; epoch {lowest[0]}'s lower {lowest[1]:.5g} is under "
                   f"{EPOCH_MIN_GAIN:.1%} better for more drift from the base model")


def suggest_epoch(rows: Sequence[dict], tie_tol: float = 0.005) -> tuple[int, str]:
    """(epoch, reason): the lowest validation loss; CLIP-I breaks near-ties; earlier epochs win ties.

    `rows`: {"epoch", "val_loss", "clip_i" (or None), "drift" (or None)} per saved epoch. With a
    drift at every epoch (a run with held-out images) the study's drift-weighed rule decides instead. Epochs whose val_loss is
    within `tie_tol` (relative) of the best are tied: validation-loss differences that small are
    noise. Among tied epochs the highest CLIP-I (likeness to the training images) wins when every
    tied epoch has one; on equal CLIP-I, or without CLIP-I, the EARLIEST tied epoch wins, since a
    later epoch that scores no better is only more likely to be overfit.
    """
    if not tie_tol >= 0:
        raise ValueError(f"tie_tol {tie_tol} must be >= 0 (a relative tolerance, e.g. 0.005 = 0.5%)")
    with_drift = _drift_weighed(rows)
    if with_drift is not None:
        return with_drift
    scored = [(int(r["epoch"]), _number(r.get("val_loss")), _number(r.get("clip_i"))) for r in rows]
    scored = sorted((e, loss, clip) for e, loss, clip in scored if loss is not None)
    if not scored:
        raise ValueError("no epoch has a finite validation loss; an epoch cannot be suggested")
    best_loss = min(loss for _, loss, _ in scored)
    limit = best_loss + tie_tol * abs(best_loss)
    tied = [(e, loss, clip) for e, loss, clip in scored if loss <= limit]
    lowest = min(tied, key=lambda t: (t[1], t[0]))
    if len(tied) == 1:
        return lowest[0], f"epoch {lowest[0]}: lowest validation loss {lowest[1]:.5g}"
    tied_text = ", ".join(str(e) for e, _, _ in tied)
    within = f"epochs {tied_text} are within {tie_tol:.2%} of the lowest validation loss {best_loss:.5g}"
    if all(clip is not None for _, _, clip in tied):
        epoch, _, clip = max(tied, key=lambda t: (t[2], -t[0]))
        return epoch, f"epoch {epoch}: {within}; it has the highest CLIP-I among them ({clip:.4g})"
    epoch = tied[0][0]
    return epoch, f"epoch {epoch}: {within}; without CLIP-I for all of them the earliest is taken (less overfit)"
