"""kohya sd-scripts' LoRA metadata (`ss_*` and `modelspec.*` keys), all values strings.

The A1111 additional-networks extension, civitai and kohya's own tools read these keys; values are
made the way kohya's `train_network.py` makes them (`str()` of the Python value, JSON for the
dataset tables), so they parse the same. Plain values in, so this stays free of config objects.
No torch.
"""

from __future__ import annotations

import datetime
import json
import random
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from lrfind.data.types import Concept, Dataset, ImageRecord
from lrfind.models.families import family_named

NETWORK_MODULE = "networks.lora"


def tag_frequency(captions: list[str]) -> dict[str, int]:
    """kohya's `set_tag_frequency`: comma-separated tags, stripped, lower-cased, counted."""
    counts: dict[str, int] = {}
    for caption in captions:
        for tag in caption.split(","):
            tag = tag.strip().lower()
            if tag:
                counts[tag] = counts.get(tag, 0) + 1
    return counts


def _dirs_info(concepts: tuple[Concept, ...]) -> dict[str, dict[str, int]]:
    return {c.folder.name: {"n_repeats": c.repeats, "img_count": len(c.images)} for c in concepts}


def dataset_metadata(dataset: Dataset) -> dict[str, Any]:
    """ss_ keys describing the dataset: image counts with repeats, folders, tag counts."""
    all_concepts = dataset.concepts + dataset.reg_concepts
    return {
        "ss_num_train_images": sum(c.repeats * len(c.images) for c in dataset.concepts),
        "ss_num_reg_images": sum(c.repeats * len(c.images) for c in dataset.reg_concepts),
        "ss_dataset_dirs": json.dumps(_dirs_info(dataset.concepts)),
        "ss_reg_dataset_dirs": json.dumps(_dirs_info(dataset.reg_concepts)),
        "ss_tag_frequency": json.dumps(
            {c.folder.name: tag_frequency([r.caption for r in c.images]) for c in all_concepts}
        ),
    }


def _kohya_arg_text(value: object) -> str:
    """A --network_args value as kohya holds it: the text after `=` (it never parses them)."""
    if isinstance(value, (list, tuple)):
        return ",".join(_kohya_arg_text(v) for v in value)
    return str(value)


def network_args_json(network_args: Mapping[str, object], network_dropout: Optional[float]) -> str:
    """kohya's ss_network_args: json.dumps of the key -> string pairs, plus "dropout" set to
    --network_dropout unless given (train_network.py adds it there for LyCORIS)."""
    values: dict[str, object] = {key: _kohya_arg_text(value) for key, value in network_args.items()}
    values.setdefault("dropout", network_dropout)
    return json.dumps(values)


def network_metadata(network_module: str, network_args: Mapping[str, object],
                     network_dropout: Optional[float]) -> dict[str, Any]:
    """ss_network_module / ss_network_dropout, and ss_network_args when there are any (as kohya)."""
    metadata: dict[str, Any] = {"ss_network_module": network_module, "ss_network_dropout": network_dropout}
    if network_args:
        metadata["ss_network_args"] = network_args_json(network_args, network_dropout)
    return metadata


def bucket_info(images: Sequence[tuple[ImageRecord, int]]) -> dict[str, Any]:
    """kohya's dataset.bucket_info from (image, repeats used per epoch) pairs.

    Buckets are numbered in sorted (width, height) order over the buckets in use, each with its
    image count including repeats; mean_img_ar_error is the mean |bucket aspect - image aspect|
    over the images (without repeats). Regularisation images count with the repeats the epoch
    gives them (kohya's balancing), so pass those, not the folder's.
    """
    used = [(record, repeats) for record, repeats in images if repeats > 0]
    counts: dict[tuple[int, int], int] = {}
    for record, repeats in used:
        counts[tuple(record.bucket)] = counts.get(tuple(record.bucket), 0) + repeats
    buckets = {index: {"resolution": bucket, "count": counts[bucket]}
               for index, bucket in enumerate(sorted(counts))}
    errors = [abs(r.bucket[0] / r.bucket[1] - r.size[0] / r.size[1]) for r, _ in used]
    return {"buckets": buckets, "mean_img_ar_error": sum(errors) / len(errors) if errors else 0}


def bucket_metadata(*, enable_bucket: bool, min_bucket_reso: int, max_bucket_reso: int,
                    bucket_no_upscale: bool, info: Optional[dict]) -> dict[str, Any]:
    """kohya's bucket keys; ss_bucket_info is "null" without bucketing (kohya's None)."""
    return {
        "ss_enable_bucket": bool(enable_bucket),
        "ss_min_bucket_reso": min_bucket_reso,
        "ss_max_bucket_reso": max_bucket_reso,
        "ss_bucket_no_upscale": bool(bucket_no_upscale),
        "ss_bucket_info": json.dumps(info if enable_bucket else None),
    }


def _resolution_pair(resolution: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(resolution, int):
        return (resolution, resolution)
    return (int(resolution[0]), int(resolution[1]))


def modelspec_metadata(*, title: str, timestamp: float, resolution: int | tuple[int, int],
                       v_parameterization: bool = False, clip_skip: int | None = None,
                       model_family: str = "sd1") -> dict[str, str]:
    """The Stability AI ModelSpec keys kohya writes for a LoRA (sai_model_spec.py) on a base model of
    `model_family` (lrfind.models.families)."""
    width, height = _resolution_pair(resolution)
    spec = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": family_named(model_family).modelspec_architecture,
        "modelspec.implementation": "diffusers",
        "modelspec.title": title,
        "modelspec.resolution": f"{width}x{height}",
        "modelspec.date": datetime.datetime.fromtimestamp(int(timestamp)).isoformat(),
        "modelspec.prediction_type": "v" if v_parameterization else "epsilon",
    }
    if clip_skip is not None:
        spec["modelspec.encoder_layer"] = str(clip_skip)
    return spec


@dataclass(frozen=True)
class RunFacts:
    """What kohya's ss_* keys say about one training run (kohya_metadata's keyword arguments)."""

    network_dim: int
    network_alpha: float
    learning_rate: float
    unet_lr: float | None
    text_encoder_lr: float | None
    optimizer: str
    lr_scheduler: str
    epoch: int
    steps: int
    max_train_steps: int
    num_epochs: int
    num_batches_per_epoch: int
    batch_size_per_device: int
    resolution: int | tuple[int, int]
    seed: int
    sd_model_name: str
    training_started_at: float
    training_finished_at: float
    output_name: str
    network_train_unet_only: bool = True
    clip_skip: int | None = None
    mixed_precision: str = "no"
    noise_offset: float | None = None
    min_snr_gamma: float | None = None
    lr_warmup_steps: int = 0
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    caption_extension: str = ".txt"
    keep_tokens: int = 0
    shuffle_caption: bool = False
    flip_aug: bool = False
    prior_loss_weight: float = 1.0
    max_token_length: int | None = None
    v_parameterization: bool = False
    network_module: str = NETWORK_MODULE
    model_family: str = "sd1"


def kohya_metadata(*, dataset: Dataset, session_id: int | None = None, extra: dict[str, Any] | None = None,
                   **facts: Any) -> dict[str, str]:
    """All of kohya's metadata for one saved LoRA file, every value a string.

    `facts` are RunFacts' fields (a misspelt one is a TypeError). `model_family` is the base
    model's (SDComponents.family, lrfind.models.families): it gives ss_v2, ss_base_model_version
    and modelspec.architecture. `optimizer` is written as given (kohya writes the class path plus
    arguments, e.g. "torch.optim.adamw.AdamW"). `extra` adds or overrides keys (values are str()-ed).
    """
    run = RunFacts(**facts)
    metadata = _ss_values(run, family_named(run.model_family), session_id)
    metadata.update(dataset_metadata(dataset))
    metadata.update(extra or {})
    # kohya: `metadata = {k: str(v) for k, v in metadata.items()}`; None becomes "None" there too.
    strings = {key: str(value) for key, value in metadata.items()}
    strings.update(modelspec_metadata(
        title=run.output_name, timestamp=run.training_finished_at, resolution=run.resolution,
        v_parameterization=run.v_parameterization, clip_skip=run.clip_skip, model_family=run.model_family))
    return strings


def _ss_values(facts: RunFacts, family, session_id: int | None) -> dict[str, Any]:
    return {
        "ss_session_id": session_id if session_id is not None else random.randint(0, 2**32),
        "ss_training_started_at": facts.training_started_at,
        "ss_training_finished_at": facts.training_finished_at,
        "ss_output_name": facts.output_name,
        "ss_learning_rate": facts.learning_rate,
        "ss_unet_lr": facts.unet_lr,
        "ss_text_encoder_lr": facts.text_encoder_lr,
        "ss_num_batches_per_epoch": facts.num_batches_per_epoch,
        "ss_num_epochs": facts.num_epochs,
        "ss_epoch": facts.epoch,
        "ss_steps": facts.steps,
        "ss_max_train_steps": facts.max_train_steps,
        "ss_lr_warmup_steps": facts.lr_warmup_steps,
        "ss_lr_scheduler": facts.lr_scheduler,
        "ss_optimizer": facts.optimizer,
        "ss_network_module": facts.network_module,
        "ss_network_dim": facts.network_dim,
        "ss_network_alpha": facts.network_alpha,
        "ss_network_train_unet_only": bool(facts.network_train_unet_only),
        "ss_mixed_precision": facts.mixed_precision,
        "ss_v2": family.kohya_v2,
        "ss_base_model_version": family.base_model_version,
        "ss_clip_skip": facts.clip_skip,
        "ss_max_token_length": facts.max_token_length,
        "ss_seed": facts.seed,
        "ss_noise_offset": facts.noise_offset,
        "ss_min_snr_gamma": facts.min_snr_gamma,
        "ss_prior_loss_weight": facts.prior_loss_weight,
        "ss_gradient_checkpointing": bool(facts.gradient_checkpointing),
        "ss_gradient_accumulation_steps": facts.gradient_accumulation_steps,
        "ss_batch_size_per_device": facts.batch_size_per_device,
        "ss_total_batch_size": facts.batch_size_per_device * facts.gradient_accumulation_steps,
        "ss_resolution": _resolution_pair(facts.resolution),
        "ss_caption_extension": facts.caption_extension,
        "ss_keep_tokens": facts.keep_tokens,
        "ss_shuffle_caption": bool(facts.shuffle_caption),
        "ss_flip_aug": bool(facts.flip_aug),
        "ss_cache_latents": True,
        "ss_sd_model_name": facts.sd_model_name,
    }
