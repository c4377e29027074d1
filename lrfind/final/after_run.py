"""After a final run: the X/Y grid of saved epochs x LoRA weights, the suggested epoch, NAME_final.json.

`NAME_final.json` (beside the LoRA files) is what `lrfind report` shows for a final run: a
lrfind.artifacts.final_summary.FinalSummary (its epochs, the suggested epoch and file, the grid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lrfind.artifacts.final_summary import FinalSummary
from lrfind.atomic import write_text
from lrfind.final.epochs import BASE_RECORD
from lrfind.final.xy_grid import save_xy_grid, suggest_epoch, xy_grid
from lrfind.training.lora_files import lora_file_path

GRID_PROMPTS = 2  # sections of the grid: the first sample prompts (each section is epochs x weights)


def final_json_path(config) -> Path:
    return Path(config.output_dir) / f"{config.output_name}_final.json"


def xy_grid_path(config) -> Path:
    return Path(config.output_dir) / f"{config.output_name}_xy_grid.png"


def epoch_files(config, final_epoch: int) -> list[tuple[int, Path]]:
    """(epoch, LoRA file) of every saved epoch still on disk, and the final file at its epoch."""
    files = [(e, lora_file_path(config, e)) for e in range(1, final_epoch)]
    files = [(e, p) for e, p in files if p.is_file()]
    return files + [(final_epoch, lora_file_path(config))]


def finish_final_run(config, components, records: dict[int, dict], prompts, final_epoch: int,
                     clip_calibrated: Optional[bool]) -> FinalSummary:
    """Grid (when samples were asked for), suggested epoch, and NAME_final.json. Returns the summary."""
    files = epoch_files(config, final_epoch)
    rows = []
    for epoch, path in files:
        record = records.get(epoch, {})
        rows.append({"epoch": epoch, "step": record.get("step"), "val_loss": record.get("val_loss"),
                     "clip_i": record.get("clip_i"), "drift": record.get("drift"),
                     "train_loss": record.get("train_loss"), "file": path.name,
                     "samples": record.get("samples", [])})
    try:
        suggested, reason = suggest_epoch(rows)
    except ValueError as err:  # no validation loss at any saved epoch
        suggested, reason = final_epoch, f"the last epoch: {err}"
    grid = None
    if config.xy_grid and config.sample_every_n_epochs and prompts:
        image = xy_grid(components, files, config.xy_grid_weights, prompts_seeds=prompts[:GRID_PROMPTS],
                        size=config.dataset.resolution, steps=config.sample_steps, clip_skip=config.model.clip_skip,
                        max_token_length=config.model.max_token_length)
        grid = save_xy_grid(image, xy_grid_path(config)).name
    summary = FinalSummary(output_name=config.output_name, epochs=rows, suggested_epoch=suggested,
                           suggested_file=dict((e, p.name) for e, p in files)[suggested], reason=reason,
                           xy_grid=grid, xy_weights=config.xy_grid_weights, prompts=prompts,
                           clip_calibrated=clip_calibrated, base_val_loss=records.get(BASE_RECORD, {}).get("val_loss"))
    write_text(final_json_path(config), summary.to_json())
    return summary
