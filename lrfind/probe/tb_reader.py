"""Read the d*lr curve (and the loss) of a kohya sd-scripts run from its TensorBoard log.

kohya writes events under `<logging_dir>/<YYYYmmddHHMMSS>/network_train/` (FACTS.md), with tags
`loss/current`, `lr/unet`, and for D-Adaptation/Prodigy `lr/d*lr/unet`, `lr/d*lr/textencoder` and
the same lrs again as `lr/groupN` / `lr/d*lr/groupN`; older versions wrote plain `lr/d*lr`.
Events are parsed with tensorboard's own EventAccumulator.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lrfind.errors import LrfindError

PREFERRED_DLR_TAGS = ("lr/d*lr/unet", "lr/d*lr", "lr/d*lr/group0")
DLR_TAG_PREFIX = "lr/d*lr"
LOSS_TAG = "loss/current"
EVENT_FILE_MARKER = "tfevents"
_EVENT_TIME = re.compile(r"tfevents\.(\d+)")  # events.out.tfevents.<unix time>.<host>...


@dataclass(frozen=True)
class TBCurve:
    """One run's d*lr curve. `run_dir` is the folder read; `other_runs` the older ones skipped."""

    tag: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    loss_steps: tuple[int, ...]
    losses: tuple[float, ...]
    available_tags: tuple[str, ...]
    run_dir: str = ""
    other_runs: tuple[str, ...] = ()

    def losses_at_steps(self) -> list[float]:
        """The loss at each d*lr step, aligned for analyse_curve.

        A step with no loss logged takes the last loss logged before it (NaN before the first), so
        that a gap in logging is not mistaken for a NaN loss, i.e. a diverged run.
        """
        aligned, latest = [], math.nan
        losses = iter(zip(self.loss_steps, self.losses))  # both sorted by step
        pending = next(losses, None)
        for step in self.steps:
            while pending is not None and pending[0] <= step:
                latest = pending[1]
                pending = next(losses, None)
            aligned.append(latest)
        return aligned


def read_dlr_curve(logdir: str | os.PathLike) -> TBCurve:
    """The d*lr curve of the newest run under `logdir` (searched recursively)."""
    root = Path(logdir)
    if not root.exists():
        raise LrfindError(
            f"TensorBoard folder {root} does not exist; pass the --logging_dir of your kohya run"
        )
    runs = _run_dirs(root)
    if not runs:
        raise LrfindError(
            f"no TensorBoard event files (events.out.tfevents.*) under {root}; pass the "
            "--logging_dir of a kohya run trained with --log_with tensorboard"
        )
    newest, older = runs[0], runs[1:]
    scalars = _load_scalars(newest)
    tags = tuple(sorted(scalars))
    tag = pick_dlr_tag(tags)
    if tag is None:
        found = ", ".join(tags) if tags else "none"
        raise LrfindError(
            f"no d*lr tag in the TensorBoard log {newest} (tags: {found}); train with "
            "--optimizer_type DAdaptAdam or Prodigy at lr 1.0 and --log_with tensorboard"
        )
    steps, values = _last_value_per_step(scalars[tag])
    loss_steps, losses = _last_value_per_step(scalars.get(LOSS_TAG, []))
    return TBCurve(
        tag=tag, steps=steps, values=values, loss_steps=loss_steps, losses=losses,
        available_tags=tags, run_dir=str(newest), other_runs=tuple(str(run) for run in older),
    )


def pick_dlr_tag(tags: tuple[str, ...] | list[str]) -> str | None:
    """`lr/d*lr/unet`, else `lr/d*lr`, else `lr/d*lr/group0`, else the first `lr/d*lr*` (sorted)."""
    for tag in PREFERRED_DLR_TAGS:
        if tag in tags:
            return tag
    candidates = sorted(tag for tag in tags if tag.startswith(DLR_TAG_PREFIX))
    return candidates[0] if candidates else None


def _run_dirs(root: Path) -> list[Path]:
    """Folders holding event files, newest first (by the time in the event file names)."""
    files = [root] if root.is_file() else [p for p in root.rglob(f"*{EVENT_FILE_MARKER}*")
                                            if p.is_file()]
    newest_by_dir: dict[Path, float] = {}
    for path in files:
        if EVENT_FILE_MARKER not in path.name:
            continue
        folder = path.parent if path != root else path
        newest_by_dir[folder] = max(newest_by_dir.get(folder, -math.inf), _event_time(path))
    # Ties (same second): the later folder name wins, as kohya's are timestamps.
    return sorted(newest_by_dir, key=lambda folder: (newest_by_dir[folder], str(folder)),
                  reverse=True)


def _event_time(path: Path) -> float:
    """The writer's start time from the file name; the modification time if the name has none."""
    match = _EVENT_TIME.search(path.name)
    return float(match.group(1)) if match else path.stat().st_mtime


def _load_scalars(run: Path) -> dict[str, list]:
    """Tag -> scalar events, every event kept (size guidance 0)."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        str(run), size_guidance={event_accumulator.SCALARS: 0}
    )
    try:
        accumulator.Reload()
    except Exception as err:  # a truncated or foreign file: say which, not a traceback
        raise LrfindError(
            f"cannot read the TensorBoard events in {run} ({type(err).__name__}: {err}); "
            "point --from-tensorboard at a complete kohya log folder"
        ) from None
    return {tag: accumulator.Scalars(tag) for tag in accumulator.Tags().get("scalars", [])}


def _last_value_per_step(events: list) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Sorted by step; a step logged twice (a resumed run) keeps its last value."""
    by_step: dict[int, float] = {}
    for event in events:
        by_step[int(event.step)] = float(event.value)
    ordered = sorted(by_step)
    return tuple(ordered), tuple(by_step[step] for step in ordered)
