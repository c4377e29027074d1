"""`lrfind train DATASET --from-study NAME`: the TrainConfig values of a study's recommended full run.

They are the lowest layer of the run's options: a --config TOML overrides them and command-line
options override both. Defaults a final run wants beside the recommendation: files under
studies/NAME/final/ named after the study, a LoRA file, samples and a state every few epochs (about
ten saved epochs at most, so the X/Y grid stays readable), TensorBoard logs, and the base model the
study's probe used.

The final run trains on every image of the dataset, the ones the study held out for validation
(lrfind.study.held_out) included: the trials only needed them to be judged on, the final LoRA
gains from them. The recommendation's steps math counts all of them and says so. To keep a
validation share in the final run, pass --validation-split (its images are then not trained on).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from lrfind.artifacts.probe_report import probe_source
from lrfind.artifacts.recommendation import read_recommendation

MAX_SAVED_EPOCHS = 10


def study_folder(name: str, study_dir: Optional[Path]) -> Path:
    return Path(study_dir) if study_dir is not None else Path("studies") / name


def every_n_epochs(epochs: int) -> int:
    """Save (and sample) every n epochs so that a run keeps at most MAX_SAVED_EPOCHS of them."""
    return max(1, math.ceil(epochs / MAX_SAVED_EPOCHS))


def from_study_values(name: str, study_dir: Optional[Path] = None) -> dict:
    """TrainConfig field values for the final run of study NAME (see the module doc)."""
    folder = study_folder(name, study_dir)
    rec = read_recommendation(folder / "recommendation.json",
                              f"no recommendation yet: run `lrfind study DATASET --name {name}` first "
                              "(or pass --study-dir where it wrote its files)")
    values = {k: v for k, v in rec.train_values.items() if v is not None}
    epochs = int(values["max_train_epochs"])
    every = every_n_epochs(epochs)
    out = folder / "final"
    values.update(output_dir=out, output_name=name, save_every_n_epochs=every, sample_every_n_epochs=every,
                  logging_dir=out / "logs")
    repeats = rec.repeats_by_folder()
    if repeats:
        values["concept_repeats"] = repeats
    model = probe_source(folder).model
    if model:
        values["pretrained_model_name_or_path"] = str(model)
    return values
