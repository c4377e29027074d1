"""Run-wide training options: the fields of TrainConfig that every run of a study shares.

They are TrainConfig's own field definitions (type, bounds, default; found through kohya's flat
name, lrfind.training.kohya_names), picked by name with pydantic's create_model, so nothing is respelled: `lrfind study` takes them with the same flags
as `lrfind train`, and a study's space `[fixed]` table takes the same keys.

`SEARCHABLE` are TrainConfig fields that a study's space may search instead (TrainConfig name ->
the space's key); `StudyTrainOptions` holds both kinds as the study's command line gave them.
"""

from __future__ import annotations

import copy

from pydantic import create_model

from lrfind.config import StrictModel
from lrfind.training.kohya_names import kohya_field

RUN_WIDE = (
    "resolution", "train_batch_size", "enable_bucket", "min_bucket_reso",
    "max_bucket_reso", "bucket_no_upscale", "shuffle_caption", "keep_tokens", "flip_aug", "reg_data_dir",
    "prior_loss_weight", "v_parameterization", "zero_terminal_snr", "clip_skip", "max_token_length", "network_train_unet_only",
    "gradient_checkpointing", "mixed_precision", "noise_offset", "min_snr_gamma", "save_precision", "max_grad_norm",
)
# TrainConfig field -> the space key that searches (or fixes) it
SEARCHABLE = {"network_dim": "network_dim", "network_alpha": "network_alpha_fraction",
              "max_train_epochs": "epochs", "optimizer_type": "optimizer", "lr_scheduler": "lr_scheduler"}


def train_fields(name: str, names, base=StrictModel):
    """A pydantic model of kohya's flat `names`, each field as TrainConfig's part defines it."""
    fields = {n: (kohya_field(n).annotation, copy.deepcopy(kohya_field(n))) for n in names}
    return create_model(name, __base__=base, __module__=__name__, **fields)


RunOptions = train_fields("RunOptions", RUN_WIDE)
StudyTrainOptions = train_fields("StudyTrainOptions", RUN_WIDE + tuple(SEARCHABLE))


def given(options) -> dict:
    """The options a user set (command line, --config), not the defaults."""
    return options.model_dump(exclude_unset=True)
