"""Callbacks of the training loop: logging, progress, checkpoints, curve recording.

A callback is any object with some of: on_train_start, on_step_end, on_validation,
on_epoch_end, on_train_end — each called with the LoopState. To stop the run, raise
lrfind.errors.TrainingStopped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

# kohya sd-scripts' TensorBoard tag names, so existing dashboards and habits carry over.
LR_TAGS = {"unet": "lr/unet", "textencoder": "lr/textencoder"}
DLR_TAGS = {"unet": "lr/d*lr/unet", "textencoder": "lr/d*lr/textencoder"}


class TensorBoardLogger:
    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self.writer = None

    def on_train_start(self, state) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.logdir))

    def on_step_end(self, state) -> None:
        w, step = self.writer, state.step
        w.add_scalar("loss/current", state.last_loss, step)
        w.add_scalar("loss/average", state.average_loss, step)
        for name, lr in state.lrs.items():
            w.add_scalar(LR_TAGS.get(name, f"lr/{name}"), lr, step)
        for name, d_lr in state.d_lrs.items():
            w.add_scalar(DLR_TAGS.get(name, f"lr/d*lr/{name}"), d_lr, step)

    def on_validation(self, state) -> None:
        self.writer.add_scalar("loss/validation", state.val_loss, state.step)

    def on_epoch_end(self, state) -> None:
        # kohya logs the epoch average against the epoch number, not the step.
        self.writer.add_scalar("loss/epoch_average", state.average_loss, state.epoch)
        self.writer.flush()

    def on_train_end(self, state) -> None:
        self.writer.close()


class ProgressBar:
    def __init__(self, description: str = "training", enabled: bool = True):
        self.description, self.enabled, self.bar = description, enabled, None

    def on_train_start(self, state) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.total_steps, initial=state.step, desc=self.description,
                        disable=None if self.enabled else True, dynamic_ncols=True)  # None: off when not a TTY

    def on_step_end(self, state) -> None:
        postfix = {"loss": f"{state.average_loss:.4f}"}
        lr = next(iter(state.d_lrs.values()), None) or next(iter(state.lrs.values()), None)
        if lr is not None:
            postfix["d*lr" if state.d_lrs else "lr"] = f"{lr:.3g}"
        if state.val_loss is not None:
            postfix["val"] = f"{state.val_loss:.4f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def on_train_end(self, state) -> None:
        self.bar.close()


class EpochCheckpoint:
    """Calls save(epoch) every n epochs (kohya's --save_every_n_epochs), not after the last one."""

    def __init__(self, every_n_epochs: int, save: Callable[[int], None], last_epoch: int):
        self.every, self.save, self.last_epoch = every_n_epochs, save, last_epoch

    def on_epoch_end(self, state) -> None:
        if state.epoch % self.every == 0 and state.epoch < self.last_epoch:
            self.save(state.epoch)


class CurveRecorder:
    """Records (step, d*lr of the UNet, loss, lr) rows: the probe's raw material."""

    def __init__(self, group: str = "unet"):
        self.group = group
        self.rows: list[tuple[int, float, float, float]] = []

    def on_step_end(self, state) -> None:
        d_lr = state.d_lrs.get(self.group, math.nan)
        self.rows.append((state.step, d_lr, state.last_loss, state.lrs.get(self.group, math.nan)))
