"""A study's recommendation as kohya sd-scripts configs, for people who keep their own trainer. Pure.

Three things come out of recommendation.json (lrfind.artifacts.recommendation.Recommendation):
- the training config for `train_network.py --config_file`: kohya flattens its sections
  (library/train_util.py `read_config_from_file`) and takes the values as they are, without
  argparse's type conversion, so each value is written in the type kohya's code expects
  (`resolution` a "W,H" string, `optimizer_args` a list of "key=value" strings it reads with
  `ast.literal_eval`, `text_encoder_lr` a float);
- the dataset config for `--dataset_config` ([general], [[datasets]], [[datasets.subsets]],
  library/config_util.py's schema): one subset per concept folder with the RECOMMENDED
  num_repeats, so nobody has to rename `10_mychar` to `6_mychar` (kohya reads repeats from the
  folder name only without a dataset config);
- the `accelerate launch ... train_network.py` line (`sdxl_train_network.py` for an SDXL model:
  the family's kohya_train_script; its SDXL options in `_family_values`).
Option names and types were read from kohya-ss/sd-scripts at commit 48d368fa (2026-02-16);
tests/test_export_kohya.py checks every key against that list.
"""

from __future__ import annotations

import shlex
import textwrap
from pathlib import Path
from typing import Any, Optional

from lrfind.artifacts.recommendation import Recommendation
from lrfind.config import DatasetConfig
from lrfind.errors import ConfigError
from lrfind.export.toml_writer import Commented, dumps
from lrfind.models.families import ModelFamily, family_named
from lrfind.network.types import type_of
from lrfind.optimizers import optimizer_entry

KOHYA_REF = "kohya-ss/sd-scripts commit 48d368fa"
NETWORK_MODULE = "networks.lora"
# train_values keys (lrfind's TrainConfig names = kohya's) copied as they are, when not None.
PASSTHROUGH = ("network_dim", "network_alpha", "network_dropout", "network_train_unet_only", "optimizer_type", "learning_rate",
               "unet_lr", "text_encoder_lr", "lr_scheduler", "lr_warmup_steps", "lr_scheduler_num_cycles",
               "lr_scheduler_power", "max_train_epochs", "max_train_steps", "train_batch_size",
               "gradient_accumulation_steps", "gradient_checkpointing", "min_snr_gamma", "noise_offset",
               "max_grad_norm", "v_parameterization", "zero_terminal_snr", "shuffle_caption", "keep_tokens", "flip_aug", "prior_loss_weight")
FLOAT_KEYS = ("network_alpha", "network_dropout", "max_grad_norm", "learning_rate", "unet_lr", "text_encoder_lr", "min_snr_gamma", "noise_offset",
              "lr_scheduler_power", "prior_loss_weight")
# Sections as kohya_ss writes them; kohya itself only flattens them (the names are for people).
SECTIONS = {
    "model_arguments": ("pretrained_model_name_or_path", "v_parameterization", "zero_terminal_snr", "no_half_vae"),
    "additional_network_arguments": ("network_module", "network_args", "network_dim", "network_alpha",
                                     "network_dropout", "network_train_unet_only",
                                     "unet_lr", "text_encoder_lr", "training_comment"),
    "optimizer_arguments": ("optimizer_type", "learning_rate", "optimizer_args", "lr_scheduler",
                            "lr_warmup_steps", "lr_scheduler_num_cycles", "lr_scheduler_power"),
    "dataset_arguments": ("dataset_config", "train_data_dir", "resolution", "caption_extension", "cache_latents",
                          "cache_text_encoder_outputs",
                          "shuffle_caption", "keep_tokens", "flip_aug", "prior_loss_weight"),
    "training_arguments": ("output_dir", "output_name", "save_model_as", "save_precision", "save_every_n_epochs",
                           "max_train_epochs", "max_train_steps", "train_batch_size", "gradient_accumulation_steps",
                           "max_grad_norm", "gradient_checkpointing", "mixed_precision", "seed", "clip_skip", "min_snr_gamma",
                           "noise_offset", "logging_dir"),
}


def _train_values(rec: Recommendation) -> dict:
    values = rec.train_values
    if not values.get("network_dim"):
        raise ConfigError("recommendation.json has no train_values with network_dim; rerun `lrfind study` "
                          "to write a complete recommendation")
    return values


def kohya_optimizer_arg(key: str, value: Any) -> str:
    """One `key=value` string as kohya parses it: `key, value = arg.split("=")`, `ast.literal_eval(value)`.

    Sequences are written `0.9,0.99` (kohya's documented form, a tuple to literal_eval), strings
    quoted, booleans `True`/`False`. lrfind's own --optimizer_args reader accepts the same strings.
    """
    if isinstance(value, dict) or value is None or "=" in key:
        raise ValueError(f"optimizer arg {key}={value!r} cannot be written as kohya's key=value")
    if isinstance(value, (list, tuple)):
        text = ",".join(repr(v) for v in value) if len(value) != 1 else f"({value[0]!r},)"
    else:
        text = repr(value)
    if "=" in text:
        raise ValueError(f"optimizer arg {key}={text}: kohya splits on '=', so the value must not hold one")
    return f"{key}={text}"


def kohya_network_arg(key: str, value: Any) -> str:
    """One --network_args string: kohya does `key, value = net_arg.split("=")` and each network
    converts the string itself (int(), float(), lycoris' str_bool), so values go in plain."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if "=" in key or "=" in text or isinstance(value, (dict, list, tuple)) or value is None:
        raise ValueError(f"network arg {key}={value!r} cannot be written as kohya's key=value")
    return f"{key}={text}"


def kohya_training_values(rec: Recommendation, *, model_path: str, dataset_dir: Optional[Path | str], output_dir: Path | str,
                          output_name: str, logging_dir: Optional[Path | str], dataset_config: Optional[Path | str] = None,
                          mixed_precision: str = "fp16", save_precision: str = "fp16", save_every_n_epochs: int = 1,
                          seed: int = 42, clip_skip: int = 1, caption_extension: str = ".txt",
                          cache_latents: bool = True, family: Optional[ModelFamily] = None) -> dict:
    """The flat kohya option -> value mapping of the training config.

    With `dataset_config` (the usual case) the concepts and their recommended repeats come from
    that file and `train_data_dir` is left out (kohya ignores it then, with a warning); without it,
    `train_data_dir = dataset_dir` and kohya reads repeats from the folder names. `family`: the
    base model's (default SD 1.x); SDXL's options differ (_family_values).
    """
    train = _train_values(rec)
    values: dict[str, Any] = {"pretrained_model_name_or_path": str(model_path),
                              "network_module": train.get("network_module") or NETWORK_MODULE}
    if train.get("network_args"):
        values["network_args"] = [kohya_network_arg(k, v) for k, v in train["network_args"].items()]
    for key in PASSTHROUGH:
        if train.get(key) is not None:
            values[key] = float(train[key]) if key in FLOAT_KEYS else train[key]
    if values.get("network_train_unet_only"):
        values.pop("text_encoder_lr", None)  # kohya would ignore it; leaving it out says so
    if not values.get("zero_terminal_snr"):
        values.pop("zero_terminal_snr", None)  # off is kohya's default: written only when on
    if not values.get("noise_offset"):
        values.pop("noise_offset", None)  # kohya's default is None (off); 0.0 says the same, less clearly
    if values.get("max_train_epochs") is not None:
        values.pop("max_train_steps", None)  # kohya: epochs override steps; keep one source of truth
    if values.get("optimizer_type") is not None:  # kohya's --optimizer_type spelling of it
        values["optimizer_type"] = optimizer_entry(values["optimizer_type"]).name
    values["optimizer_args"] = [kohya_optimizer_arg(k, v) for k, v in (train.get("optimizer_args") or {}).items()]
    resolution = int(train.get("resolution", 512))
    values["resolution"] = f"{resolution},{resolution}"  # kohya splits this string on ","
    if train.get("max_token_length") in (150, 225):  # kohya's choices are None (= 75), 150, 225
        values["max_token_length"] = int(train["max_token_length"])
    if dataset_config is not None:
        values["dataset_config"] = str(dataset_config)
    elif dataset_dir is not None:
        values["train_data_dir"] = str(dataset_dir)
    # the study's run-wide options (lrfind study --clip-skip 2 ...) win over this function's defaults;
    # a study's "no" mixed precision is a CPU study's, not a choice for kohya's GPU run
    clip_skip = train.get("clip_skip") or clip_skip
    if train.get("mixed_precision") not in (None, "no"):
        mixed_precision = train["mixed_precision"]
    values.update(caption_extension=caption_extension, cache_latents=bool(cache_latents),
                  output_dir=str(output_dir), output_name=output_name, save_model_as="safetensors",
                  save_precision=save_precision, save_every_n_epochs=int(save_every_n_epochs),
                  mixed_precision=mixed_precision, seed=int(seed), clip_skip=int(clip_skip),
                  training_comment=_training_comment(rec))
    if logging_dir is not None:
        values["logging_dir"] = str(logging_dir)
    return _family_values(values, family or family_named("sd1"))


def _family_values(values: dict, family: ModelFamily) -> dict:
    """SDXL's differences, as sdxl_train_network.py takes them: no clip_skip (kohya warns that it
    does nothing on SDXL, sdxl_train_util.verify_sdxl_training_args), the VAE in fp32
    (`no_half_vae`: SDXL's VAE overflows to NaN in fp16, the usual kohya_ss setting), and the two
    text encoders' outputs cached when they do not train and captions are not shuffled (kohya
    asserts both for `cache_text_encoder_outputs`), as lrfind's own SDXL runs do."""
    if family.name != "sdxl":
        return values
    values = {k: v for k, v in values.items() if k != "clip_skip"}
    values["no_half_vae"] = True
    if values.get("network_train_unet_only") and not values.get("shuffle_caption"):
        values["cache_text_encoder_outputs"] = True
    return values


def _training_comment(rec: Recommendation) -> str:
    trial = rec.trial_number
    sure = rec.confidence
    parts = [f"trial {trial}" if trial is not None else "", f"confidence {sure}" if sure else ""]
    details = ", ".join(p for p in parts if p)
    return "lrfind study recommendation" + (f" ({details})" if details else "")


def _comments(rec: Recommendation) -> dict[str, str]:
    train = _train_values(rec)
    module = train.get("network_module") or NETWORK_MODULE
    notes = {"network_module": type_of(module, train.get("network_args") or {}).kohya_note,
             "resolution": "kohya reads 'width,height'",
             "optimizer_args": "kohya's key=value strings", "cache_latents": "fine without augmentations",
             "no_half_vae": "SDXL's VAE overflows in fp16",
             "cache_text_encoder_outputs": "both encoders frozen: encoded once"}
    if rec.steps_math:
        notes["max_train_epochs"] = rec.steps_math
    notes["network_dim"] = f"from study trial {rec.trial_number}"
    return notes


def _sectioned(values: dict, comments: dict[str, str]) -> dict:
    placed: set[str] = set()
    document: dict[str, dict] = {}
    for section, keys in SECTIONS.items():
        table = {k: Commented(values[k], comments.get(k, "")) for k in keys if k in values and k not in placed}
        placed.update(table)
        if table:
            document[section] = table
    rest = {k: v for k, v in values.items() if k not in placed}
    if rest:
        document.setdefault("training_arguments", {}).update(rest)
    return document


def kohya_training_toml(rec: Recommendation, *, model_path: str, dataset_dir: Optional[Path | str], output_dir: Path | str,
                        output_name: str, logging_dir: Optional[Path | str], **options) -> str:
    """kohya's `--config_file` TOML for the recommended run (options: see kohya_training_values)."""
    values = kohya_training_values(rec, model_path=model_path, dataset_dir=dataset_dir, output_dir=output_dir,
                                   output_name=output_name, logging_dir=logging_dir, **options)
    script = (options.get("family") or family_named("sd1")).kohya_train_script
    header = (f"kohya sd-scripts training config ({script} --config_file), written by lrfind export-kohya\n"
              f"from the study's recommendation.json. Option names and types: {KOHYA_REF}.\n")
    if rec.summary:
        header += "\n" + textwrap.fill(rec.summary, width=100) + "\n"
    if "dataset_config" in values:
        header += "No folder needs renaming: the dataset config's num_repeats replace the N of N_name folders.\n"
    return dumps(_sectioned(values, _comments(rec)), header=header)


# --- the dataset config ---------------------------------------------------------------------------


def concept_repeats(rec: Recommendation) -> list[tuple[str, str, int]]:
    """(folder, concept, recommended repeats) per concept folder."""
    result = [(c.folder, c.concept, c.repeats) for c in rec.concept_repeats]
    if not result:
        raise ConfigError("recommendation.json lists no concept_repeats; rerun `lrfind study` to write a "
                          "complete recommendation")
    return result


def kohya_dataset_values(rec: Recommendation, *, dataset_dir: Path | str, caption_extension: str = ".txt") -> dict:
    """kohya's dataset config as a dict: [general] bucketing, one [[datasets]], a subset per concept."""
    train = _train_values(rec)
    resolution = int(train.get("resolution", 512))
    buckets = {k: train[k] for k in ("min_bucket_reso", "max_bucket_reso") if train.get(k) is not None}
    low, high = DatasetConfig(train_dir=Path(dataset_dir), resolution=resolution, **buckets).bucket_range
    general = {"caption_extension": caption_extension, "enable_bucket": bool(train.get("enable_bucket", True)),
               "min_bucket_reso": low, "max_bucket_reso": high, "bucket_reso_steps": 64,
               "bucket_no_upscale": bool(train.get("bucket_no_upscale", False))}
    for key in ("shuffle_caption", "keep_tokens", "flip_aug"):
        if train.get(key) is not None:
            general[key] = train[key]
    subsets = [{"image_dir": str(Path(dataset_dir) / folder), "num_repeats": repeats, "class_tokens": concept}
               for folder, concept, repeats in concept_repeats(rec)]
    dataset = {"resolution": resolution, "batch_size": int(train.get("train_batch_size", 1)), "subsets": subsets}
    return {"general": general, "datasets": [dataset]}


def kohya_dataset_toml(rec: Recommendation, *, dataset_dir: Path | str, caption_extension: str = ".txt") -> str:
    """kohya's `--dataset_config` TOML with the recommended num_repeats per concept folder."""
    document = kohya_dataset_values(rec, dataset_dir=dataset_dir, caption_extension=caption_extension)
    for subset in document["datasets"][0]["subsets"]:
        folder = Path(subset["image_dir"]).name
        subset["num_repeats"] = Commented(subset["num_repeats"], f"recommended (folder name says {folder})")
    header = (f"kohya sd-scripts dataset config (--dataset_config), written by lrfind export-kohya.\n"
              f"num_repeats here replaces the N of each N_name folder. Schema: library/config_util.py, {KOHYA_REF}.\n")
    if rec.steps_math:
        header += f"Steps: {rec.steps_math}\n"
    return dumps(document, header=header)


def accelerate_command(config_file: Path | str, dataset_config: Optional[Path | str] = None, *,
                       script: str = "train_network.py", num_cpu_threads_per_process: int = 1) -> str:
    """The line to run in kohya sd-scripts' folder (paths quoted for a POSIX shell)."""
    parts = ["accelerate", "launch", "--num_cpu_threads_per_process", str(num_cpu_threads_per_process), script,
             "--config_file", str(config_file)]
    if dataset_config is not None:
        parts += ["--dataset_config", str(dataset_config)]
    return " ".join(shlex.quote(p) for p in parts)
