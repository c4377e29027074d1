"""The TrainConfig of a study's run: a trial's, or the baseline's. The one place a study's options
and a trial's planned values (lrfind.study.trial_values) become a training config. Pure.

When the run validates is not part of it: that is the trial's ValidationPlan (lrfind.training.plan),
passed to lora_run beside the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from lrfind.study.config import StudyConfig
from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import nest


def trial_train_config(cfg: StudyConfig, train_values: Mapping[str, object], *, seed: int,
                       output_dir: Optional[Path] = None) -> TrainConfig:
    """`train_values`: the values planned for the run in kohya's flat names (lrfind.training.kohya_names) (TrialPlan.train_values, or the space's
    fixed values and a step count for the baseline; they win over the study's); `seed`: the trial's
    training seed."""
    planned = nest(train_values, "a trial's planned values")
    dataset = {**cfg.dataset.model_dump(exclude_unset=True), **planned.pop("dataset", {})}
    model = {**cfg.model.model_dump(exclude_unset=True), **planned.pop("model", {})}
    study_values = dict(cache_dir=cfg.cache_dir, torch_compile=cfg.torch_compile, seed=seed,
                        output_dir=output_dir if output_dir is not None else cfg.out_dir(), output_name="lora",
                        progress=False)
    return TrainConfig(dataset=dataset, model=model, **{**study_values, **planned})
