"""Saved training state, for `lrfind train --resume`: LoRA weights, optimizer, scheduler, progress.

A state is a folder `OUTPUT_DIR/NAME-000003-state/` (kohya's naming) written at an epoch end:
  lora.safetensors  the LoRA in fp32 (kohya format: exact, whatever --save-precision says)
  optimizer.pt      the optimizer's state_dict (Adam moments, D-Adaptation's/Prodigy's d, ...)
  scheduler.pt      the lr scheduler's state_dict
  state.json        step, epoch, validation history, and the settings that must not change
The loop draws its randomness from generators seeded per (seed, epoch), so a run resumed at an
epoch boundary continues exactly as the uninterrupted run would have. The folder is written
under a temporary name and renamed when complete; only the newest state is kept.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Optional

from pydantic_core import to_jsonable_python

from lrfind.atomic import atomic_folder, write_bytes, write_text
from lrfind.errors import ConfigError
from lrfind.network import load_lora, save_lora
from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import kohya_values
from lrfind.training.loop import LoopState

STATE_SUFFIX = "-state"
# Options a resumed run may change: they do not alter what is trained, only how it is watched.
RESUMABLE_CHANGES = {"resume", "progress", "logging_dir", "sample_every_n_epochs", "sample_prompts",
                     "sample_steps", "xy_grid", "xy_grid_weights", "clip", "save_every_n_epochs",
                     "save_state", "save_precision", "cache_dir", "output_dir"}


def state_folder(config: TrainConfig, epoch: int) -> Path:
    return Path(config.output_dir) / f"{config.output_name}-{epoch:06d}{STATE_SUFFIX}"


def _fingerprint(config: TrainConfig) -> dict:
    """The run's settings in kohya's flat names (state.json's spelling; a differing one is named so)."""
    values = to_jsonable_python(kohya_values(config))
    return {k: v for k, v in values.items() if k not in RESUMABLE_CHANGES}


def saved_states(config: TrainConfig) -> list[tuple[int, Path]]:
    """(epoch, folder) of the complete saved states of this run, oldest first."""
    pattern = re.compile(re.escape(config.output_name) + r"-(\d{6})" + re.escape(STATE_SUFFIX) + "$")
    found = []
    folder = Path(config.output_dir)
    for path in folder.glob(f"{config.output_name}-*{STATE_SUFFIX}") if folder.is_dir() else ():
        match = pattern.match(path.name)
        if match and (path / "state.json").is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_state(config: TrainConfig, parts, loop_state) -> Path:
    """Write the state of this epoch end; then remove older states of the same run.

    A full disk raises DiskFullError naming the file; the older state is then kept, and no
    half-written folder is left.
    """
    target = state_folder(config, loop_state.epoch)
    with atomic_folder(target) as tmp:
        save_lora(tmp / "lora.safetensors", parts.network.kohya_state_dict("fp32"), {}, "fp32")
        write_bytes(tmp / "optimizer.pt", _torch_bytes(parts.optimizer.state_dict()))
        write_bytes(tmp / "scheduler.pt", _torch_bytes(parts.lr_scheduler.state_dict()))
        progress = {"step": loop_state.step, "epoch": loop_state.epoch, "val_loss": loop_state.val_loss,
                    "val_history": [list(v) for v in loop_state.val_history],
                    "total_steps": loop_state.total_steps, "settings": _fingerprint(config)}
        write_text(tmp / "state.json", json.dumps(progress, indent=1) + "\n")
    for _, old in saved_states(config):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def _torch_bytes(obj) -> bytes:
    # torch.save straight to a file on a full disk fails with "unexpected pos 576 vs 534", which
    # never says the disk is full; serialised in memory (a LoRA's optimizer state is small), the
    # write is Python's and a full disk is an OSError that atomic turns into DiskFullError.
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def find_resume_folder(config: TrainConfig) -> Optional[Path]:
    """The folder --resume names; "last" (a bare --resume): this run's newest saved state."""
    if config.resume is None:
        return None
    if config.resume != "last":
        folder = Path(config.resume)
        if not (folder / "state.json").is_file():
            raise ConfigError(f"{folder}: not a saved training state (no state.json); pass a "
                              f"{config.output_name}-NNNNNN{STATE_SUFFIX} folder, or --resume alone for the newest")
        return folder
    states = saved_states(config)
    if not states:
        raise ConfigError(f"{config.output_dir}: no saved state of {config.output_name!r} to resume "
                          "(the run stopped before its first epoch ended?); run again without --resume")
    return states[-1][1]


def read_progress(folder: Path, config: TrainConfig) -> dict:
    """state.json, after checking that the run's settings are the ones it was saved with."""
    try:
        progress = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{folder / 'state.json'}: unreadable ({err}); resume from another state "
                          "or start again without --resume") from None
    saved, now = progress.get("settings", {}), _fingerprint(config)
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        raise ConfigError(f"{folder}: saved with other settings ({', '.join(changed)} differ); resume with the "
                          "options of the interrupted run, or start again without --resume")
    return progress


def load_state(folder: Path, config: TrainConfig, parts):
    """Load the saved weights, optimizer and scheduler into `parts`; return the LoopState to go on from."""
    import torch

    progress = read_progress(folder, config)
    if progress["total_steps"] != parts.total_steps:
        raise ConfigError(f"{folder}: saved for a run of {progress['total_steps']} steps, this one has "
                          f"{parts.total_steps} (the dataset changed?); start again without --resume")
    state_dict, _ = load_lora(folder / "lora.safetensors")
    parts.network.load_kohya_state_dict(state_dict, source=str(folder / "lora.safetensors"))
    _load_into(parts.optimizer, folder / "optimizer.pt")
    _load_into(parts.lr_scheduler, folder / "scheduler.pt")
    state = LoopState(parts.total_steps, parts.steps_per_epoch, step=progress["step"], epoch=progress["epoch"],
                      val_loss=progress.get("val_loss"),
                      val_history=[(int(s), float(v)) for s, v in progress.get("val_history", [])])
    return state


def _load_into(target, path: Path) -> None:
    """target.load_state_dict from a torch file, tensors and plain data only; one ConfigError if not.

    weights_only=True never runs code from the file: a pickle that would (a tampered state) is
    refused like a truncated or foreign file, by name and without torch's multi-line advice.
    """
    import pickle

    import torch

    try:
        data = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        what = ("holds objects other than tensors and plain data (it could run code): refused"
                if "weights only" in str(err).lower() else "is not a torch file")
        raise ConfigError(f"{path}: {what}; resume from another state or start again without --resume") from None
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: torch raises many kinds
        raise ConfigError(f"{path}: unreadable ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}); "
                          "resume from another state or start again without --resume") from None
    try:
        target.load_state_dict(data)
    except Exception as err:  # noqa: BLE001 - a state of another run's optimizer/scheduler: any shape error
        raise ConfigError(f"{path}: does not fit this run ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:120] if str(err) else ''}); resume from another state "
                          "or start again without --resume") from None
