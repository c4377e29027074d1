"""A trial's curves per epoch boundary, beside its held-out loss: drift from the base model
(lrfind.scoring.drift; the base predictions once per process) and the training loss.

A swept trial's boundaries are the steps where each shorter epoch count ends (the ones it
validates at, lrfind.study.epoch_sweep); a trial of one epoch count is measured at its last step.
The kept epoch's drift is the trial's `drift`; every boundary's is in `epoch_drifts`. The
training loss at a boundary is the mean per-step loss since the previous one (`epoch_train_losses`):
one step's loss depends on the timestep and noise drawn, their mean over a stretch of steps shows
the trend the diagnosis (lrfind.study.diagnosis) reads.
"""

from __future__ import annotations

from typing import Optional

from lrfind.scoring.drift import measure_drift
from lrfind.study.epoch_sweep import DRIFT_ATTR, EPOCH_DRIFTS_ATTR, EPOCH_TRAIN_LOSSES_ATTR


def study_drift_probe(space, components, dataset):
    """The DriftProbe of a study's dataset with the base model's predictions, on the trials' device."""
    from lrfind.scoring.drift import drift_probe_on_device

    fixed = space.fixed
    return drift_probe_on_device(components, dataset, fixed.resolution, clip_skip=fixed.clip_skip,
                                 max_token_length=fixed.max_token_length, mixed_precision=fixed.mixed_precision)


class DriftRecorder:
    """Loop callback: the drift at each epoch boundary step (registered before the pruning reporter,
    so a trial pruned at a boundary has that boundary's drift)."""

    def __init__(self, probe, parts, boundaries: dict[int, int]):
        self.probe, self.parts = probe, parts
        self.epochs_at = {step: epochs for epochs, step in boundaries.items()}
        self.by_epoch: dict[int, float] = {}

    def on_validation(self, state) -> None:
        epochs = self.epochs_at.get(state.step)
        if epochs is None or epochs in self.by_epoch:
            return
        self.by_epoch[epochs] = measure_drift(self.probe, self.parts)

    def metrics(self, kept_epochs: Optional[int]) -> dict:
        """The trial's drift (at the kept epoch count, else the last measured) and every boundary's."""
        if not self.by_epoch:
            return {}
        kept = kept_epochs if kept_epochs in self.by_epoch else max(self.by_epoch)
        return {DRIFT_ATTR: self.by_epoch[kept],
                EPOCH_DRIFTS_ATTR: {str(e): d for e, d in sorted(self.by_epoch.items())}}


class TrainLossRecorder:
    """Loop callback: the mean training loss of the steps since the previous boundary, per boundary."""

    def __init__(self, boundaries: dict[int, int]):
        self.epochs_at = {step: epochs for epochs, step in boundaries.items()}
        self.losses: list[float] = []
        self.by_epoch: dict[int, float] = {}

    def on_step_end(self, state) -> None:
        self.losses.append(float(state.last_loss))
        epochs = self.epochs_at.get(state.step)
        if epochs is not None and self.losses:
            self.by_epoch[epochs] = sum(self.losses) / len(self.losses)
            self.losses = []

    def metrics(self) -> dict:
        if len(self.by_epoch) < 2:
            return {}
        return {EPOCH_TRAIN_LOSSES_ATTR: {str(e): v for e, v in sorted(self.by_epoch.items())}}
