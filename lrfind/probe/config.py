"""ProbeConfig: the options of `lrfind probe`, validated once at the CLI.

The dataset, model and network are the shared parts (lrfind.config, lrfind.network.config);
`lrfind probe`'s flags keep their flat names (--resolution, --network-dim) through the table in
lrfind.cli.probe_cmd."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from lrfind.config import DatasetConfig, ModelConfig, Seed, StrictModel
from lrfind.data.holdout import DEFAULT_VALIDATION_SPLIT, MIN_IMAGES_TO_HOLD_OUT
from lrfind.network.config import NetworkConfig


def probe_network() -> NetworkConfig:
    """The network the probe trains unless told otherwise (kohya's --network_module / --network_args;
    the probe's own dim 8, alpha 8). A study rescales the probe's lr to each trial's type by
    derive.network_lr_factor, so the default LoRA serves them all."""
    return NetworkConfig(dim=8, alpha=8.0)


class ProbeConfig(StrictModel):
    dataset: Optional[DatasetConfig] = None  # not needed with from_tensorboard
    model: ModelConfig = ModelConfig()
    network: NetworkConfig = Field(default_factory=probe_network)
    # None: Prodigy for a probe run (its plateau lands within x2 of the AdamW optimum in every
    # measured seed, DAdaptAdam's in 7 of 9: docs/probe.md); DAdaptation for --from-tensorboard,
    # since the kohya logs people have come from the folk recipe's DAdaptation runs.
    optimizer: Optional[Literal["dadaptation", "prodigy"]] = None
    method: Literal["dadaptation", "range", "both"] = "dadaptation"
    steps: int = Field(200, ge=8)
    seed: Seed = 42
    out: Optional[Path] = None  # default studies/<dataset name>/
    cache_dir: Optional[Path] = None
    from_tensorboard: Optional[Path] = None
    range_steps: int = Field(100, ge=8)
    range_min_lr: float = Field(1e-6, gt=0, allow_inf_nan=False)
    range_max_lr: float = Field(1e-1, gt=0, allow_inf_nan=False)
    range_eval_every: int = Field(5, ge=1)
    progress: bool = True
    # held-out images (lrfind.data.held_out_images), picked as `lrfind study` picks them (same
    # options, defaults and --seed, so a probe and a study of one dataset hold out the same files):
    # the probe never trains on them and reports its loss there (probe.json's held_out)
    validation_split: float = Field(DEFAULT_VALIDATION_SPLIT, ge=0, lt=1)
    validation_min_images: int = Field(MIN_IMAGES_TO_HOLD_OUT, ge=2)
    validation_dir: Optional[Path] = None
    held_out_evals: int = Field(4, ge=1)  # held-out losses measured evenly over the d*lr probe, the last at its end

    @model_validator(mode="after")
    def _range_goes_up(self) -> "ProbeConfig":
        if self.dataset is None and self.from_tensorboard is None:
            raise ValueError("give a DATASET to probe, or --from-tensorboard LOGDIR to analyse a kohya log")
        if self.range_min_lr >= self.range_max_lr:
            raise ValueError(f"range_min_lr {self.range_min_lr:g} must be below range_max_lr {self.range_max_lr:g}: "
                             "the range test raises the lr from min to max (e.g. --range-min-lr 1e-6 "
                             "--range-max-lr 0.1)")
        return self

    @property
    def probe_optimizer(self) -> str:
        if self.optimizer is not None:
            return self.optimizer
        return "dadaptation" if self.from_tensorboard is not None else "prodigy"

    @property
    def dataset_shape(self) -> tuple[int, int]:
        """(resolution, batch size) the probe trains at; DatasetConfig's defaults for a kohya log,
        whose run's values probe.json records as these."""
        if self.dataset is not None:
            return self.dataset.resolution, self.dataset.batch_size
        fields = DatasetConfig.model_fields
        return fields["resolution"].default, fields["batch_size"].default

    def out_dir(self) -> Path:
        if self.out is not None:
            return self.out
        source = self.dataset.train_dir if self.dataset is not None else self.from_tensorboard
        return Path("studies") / Path(source).resolve().name
