"""kohya's flat option names <-> TrainConfig's nested fields: the one table, used both ways.

kohya sd-scripts spells every option flat (`network_dim`, `train_data_dir`, `lr_scheduler`); lrfind
nests them in shared parts (`network.dim`, `dataset.train_dir`, `scheduler.name`). The flat names
are the edges' spelling: `lrfind train`'s flags (`--network-dim` and `--network_dim`), a kohya
`--config_file` TOML (flat or in kohya's sections), a study's `[fixed]` table and planned trial
values, the exported kohya TOMLs and a resumable state's settings. Everything inside reads the
nested fields. An option is added once: its field in its part, and its row here.
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic.fields import FieldInfo

from lrfind.config import build, nest_flat
from lrfind.errors import ConfigError
from lrfind.training.config import TrainConfig

# kohya's flat key -> the TrainConfig field path, in the order `lrfind train --help` lists them
KOHYA_KEYS: dict[str, tuple[str, ...]] = {
    "train_data_dir": ("dataset", "train_dir"),
    "reg_data_dir": ("dataset", "reg_dir"),
    "prior_loss_weight": ("prior_loss_weight",),
    "caption_extension": ("dataset", "caption_extension"),
    "resolution": ("dataset", "resolution"),
    "enable_bucket": ("dataset", "enable_bucket"),
    "min_bucket_reso": ("dataset", "min_bucket_reso"),
    "max_bucket_reso": ("dataset", "max_bucket_reso"),
    "bucket_no_upscale": ("dataset", "bucket_no_upscale"),
    "shuffle_caption": ("dataset", "shuffle_caption"),
    "keep_tokens": ("dataset", "keep_tokens"),
    "flip_aug": ("dataset", "flip_aug"),
    "cache_dir": ("cache_dir",),
    "pretrained_model_name_or_path": ("model", "model"),
    "allow_pickle": ("model", "allow_pickle"),
    "v_parameterization": ("model", "v_parameterization"),
    "zero_terminal_snr": ("model", "zero_terminal_snr"),
    "clip_skip": ("model", "clip_skip"),
    "max_token_length": ("model", "max_token_length"),
    "network_module": ("network", "module"),
    "network_dim": ("network", "dim"),
    "network_alpha": ("network", "alpha"),
    "network_train_unet_only": ("network", "train_unet_only"),
    "network_weights": ("network", "weights"),
    "network_args": ("network", "args"),
    "network_dropout": ("network", "dropout"),
    "optimizer_type": ("optimizer", "type"),
    "optimizer_args": ("optimizer", "args"),
    "learning_rate": ("optimizer", "learning_rate"),
    "unet_lr": ("optimizer", "unet_lr"),
    "text_encoder_lr": ("optimizer", "text_encoder_lr"),
    "lr_scheduler": ("scheduler", "name"),
    "lr_warmup_steps": ("scheduler", "warmup_steps"),
    "lr_scheduler_num_cycles": ("scheduler", "num_cycles"),
    "lr_scheduler_power": ("scheduler", "power"),
    "max_train_steps": ("max_train_steps",),
    "max_train_epochs": ("max_train_epochs",),
    "train_batch_size": ("dataset", "batch_size"),
    "gradient_accumulation_steps": ("gradient_accumulation_steps",),
    "max_grad_norm": ("optimizer", "max_grad_norm"),
    **{name: (name,) for name in (
        "gradient_checkpointing", "torch_compile", "mixed_precision", "seed", "noise_offset", "min_snr_gamma",
        "validation_split", "validation_timesteps", "validation_seed", "validate_every_n_steps", "output_dir",
        "output_name", "save_every_n_epochs", "save_precision", "logging_dir", "progress", "concept_repeats",
        "sample_every_n_epochs", "sample_prompts", "sample_steps", "xy_grid", "xy_grid_weights", "clip",
        "save_state", "resume")},
}
FLAT_NAMES: dict[tuple[str, ...], str] = {path: flat for flat, path in KOHYA_KEYS.items()}


def kohya_field(flat: str) -> FieldInfo:
    """The pydantic field (type, bounds, default) that kohya's key `flat` sets."""
    *parts, name = KOHYA_KEYS[flat]
    model = TrainConfig
    for part in parts:
        model = model.model_fields[part].annotation
    return model.model_fields[name]


def kohya_fields() -> dict[str, FieldInfo]:
    """Every kohya key with its field, in the table's order (the CLI's flags, a TOML's keys)."""
    return {flat: kohya_field(flat) for flat in KOHYA_KEYS}


def nest(flat: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """kohya's flat values -> TrainConfig's nested values; a key not in the table is refused, named."""
    unknown = [key for key in flat if key not in KOHYA_KEYS]
    if unknown:
        prefix = f"{source}: " if source else ""
        raise ConfigError(prefix + "; ".join(f"{key}: unknown option (check the spelling; see --help)"
                                             for key in unknown))
    return nest_flat(flat, KOHYA_KEYS)


def kohya_values(config: TrainConfig) -> dict[str, Any]:
    """The config in kohya's flat names, every key of the table (the inverse of nest)."""
    values = {}
    for flat, path in KOHYA_KEYS.items():
        value: Any = config
        for name in path:
            value = getattr(value, name)
        values[flat] = value
    return values


def train_config(flat: Mapping[str, Any], source: str = "") -> TrainConfig:
    """A TrainConfig from kohya's flat values; a bad value is a one-line ConfigError naming its kohya key."""
    return build(TrainConfig, source, FLAT_NAMES, **nest(flat, source))
