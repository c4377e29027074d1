"""Load a base model with no network: a built-in, a diffusers folder, or a single checkpoint file.

Every path ends in SDComponents with all modules in eval mode and frozen; training code unfreezes
what it trains (LoRA adapters). Errors are one-line ModelErrors naming the file and the fix.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from lrfind.config import ModelConfig
from lrfind.errors import ModelError
from lrfind.models.builtin import BUILTIN_FAMILIES, build_builtin, is_builtin
from lrfind.models.components import SDComponents
from lrfind.models.families import ModelFamily, detect_folder, detect_single_file, family_named, variant_named

OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE")


@contextmanager
def offline_hub() -> Iterator[None]:
    """Forbid Hub downloads while loading, restoring the previous settings afterwards.

    huggingface_hub reads HF_HUB_OFFLINE once at import, so its constant is switched too. Every
    loader below also passes local_files_only=True; this is the second lock on the door.
    """
    saved_env = {name: os.environ.get(name) for name in OFFLINE_ENV}
    import huggingface_hub.constants as hub_constants

    saved_constant = hub_constants.HF_HUB_OFFLINE
    os.environ.update({name: "1" for name in OFFLINE_ENV})
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_constant
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_components(cfg: ModelConfig, dtype=None, *, for_training: bool = True) -> SDComponents:
    """The model named by cfg.model, in `dtype` (default float32), frozen and in eval mode.

    for_training: refuse, before any weight is read, a model of a family lrfind cannot train yet
    (ModelFamily.trainable: SDXL). `lrfind model save|info` pass False.
    """
    import torch

    dtype = dtype or torch.float32
    with offline_hub():
        if for_training:
            require_trainable(cfg)
        if is_builtin(cfg.model):
            components = build_builtin(cfg.model, cfg.seed)
        else:
            components = _load_path(Path(cfg.model).expanduser(), cfg.allow_pickle, dtype)
    if for_training:
        _require_trainable_family(family_named(components.family), cfg.model)  # a pickle: known only now
    from lrfind.models.single_file import cast

    for module in components.modules().values():
        cast(module, dtype)
        module.eval().requires_grad_(False)
    return components


def model_family(model: str) -> Optional[ModelFamily]:
    """The family of `model` without loading it: a built-in's name, a folder's model_index.json or a
    .safetensors header; None for a pickle (known once loaded) or a path that is not there."""
    from lrfind.models.single_file import SAFETENSORS_SUFFIXES, read_shapes

    path = Path(model).expanduser()
    if is_builtin(model):
        return family_named(BUILTIN_FAMILIES[model])
    if path.is_dir():
        return detect_folder(read_model_index(path), str(path))
    if path.is_file() and path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return detect_single_file(read_shapes(path), str(path))[0]
    return None


def require_trainable(cfg: ModelConfig) -> None:
    """ModelError when cfg.model is of a family lrfind cannot train yet (model_family; a pickle is
    checked once loaded)."""
    family = model_family(cfg.model)
    if family is not None:
        _require_trainable_family(family, cfg.model)


def _require_trainable_family(family: ModelFamily, source: str) -> None:
    if not family.trainable:
        raise ModelError(f"{source}: {family.label} training is not supported yet (issue 16); "
                         f"train an SD 1.x model (`lrfind model info|save` work on {family.label})")


def _load_path(path: Path, allow_pickle: bool, dtype) -> SDComponents:
    if not path.exists():
        raise ModelError(f"{path}: no such file or folder; pass `tiny`, `tiny-pretrained`, `tiny-sdxl`, "
                         "a diffusers folder or a .safetensors file")
    if path.is_dir():
        return load_diffusers_folder(path, allow_pickle, dtype)
    return load_checkpoint_file(path, allow_pickle, dtype)


def load_checkpoint_file(path: Path, allow_pickle: bool, dtype) -> SDComponents:
    from lrfind.models.single_file import load_single_file
    from lrfind.models.tokenizer import get_clip_tokenizer, get_open_clip_tokenizer

    modules, architecture = load_single_file(path, allow_pickle, dtype)
    family = variant_named(architecture)[0]
    second = "text_encoder_2" in modules
    return SDComponents(
        **modules,
        tokenizer=get_clip_tokenizer(),
        tokenizer_2=get_open_clip_tokenizer() if second else None,
        noise_scheduler=training_scheduler(family),
        name=path.name,
        prediction_type=family.single_file_prediction_type,  # a file does not say whether it predicts v
        family=family.name,
    )


def training_scheduler(family: ModelFamily, config: dict | None = None):
    """DDPM noise schedule for training: the family's unless a diffusers folder's scheduler config says otherwise."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config({**family.noise_schedule, **(config or {})})


def zero_terminal_snr_scheduler(scheduler):
    """A copy of a DDPM training schedule with its betas rescaled to zero terminal SNR: diffusers'
    `rescale_betas_zero_snr` (the algorithm kohya's fix_noise_scheduler_betas_for_zero_terminal_snr
    applies in place; tests/test_zero_terminal_snr.py compares them)."""
    from diffusers import DDPMScheduler

    # a keyword, not a key of the config dict: from_config resets the keys its config lists in
    # `_use_default_values` (rescale_betas_zero_snr among them) to their defaults
    return DDPMScheduler.from_config(scheduler.config, rescale_betas_zero_snr=True)


def read_model_index(folder: Path) -> dict:
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelError(
            f"{folder}: a folder without model_index.json is not a diffusers model; "
            "pass the model's top folder (the one holding unet/, vae/, text_encoder/) or a .safetensors file"
        )
    try:
        return json.loads(index_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{index_file}: not valid JSON ({err}); restore the file from the model's source") from None


def _folder_family(folder: Path, index: dict) -> ModelFamily:
    family = detect_folder(index, str(folder))
    missing = [part for part in family.parts if not (folder / part).is_dir()]
    if missing:
        raise ModelError(f"{folder}: the diffusers folder has no {', '.join(missing)}/ subfolder; the download is incomplete")
    return family


def _require_safetensors(folder: Path, family: ModelFamily) -> None:
    # Checked here so the message is ours (diffusers logs its own error line before raising).
    for part in family.parts:
        if not any((folder / part).glob("*.safetensors")):
            raise ModelError(
                f"{folder / part}: has no .safetensors weights, only pickles (.bin), which can run code; "
                "pass --allow-pickle if you trust them (they are then loaded weights-only)"
            )


def load_diffusers_folder(folder: Path, allow_pickle: bool, dtype) -> SDComponents:
    """A local diffusers SD 1.x or SDXL folder. Pickled (.bin) weights only with allow_pickle."""
    index = read_model_index(folder)
    family = _folder_family(folder, index)
    safetensors_only = not allow_pickle
    if safetensors_only:
        _require_safetensors(folder, family)
    try:
        modules = _load_folder_modules(folder, family, dtype, use_safetensors=safetensors_only or None)
    except (OSError, ValueError, EnvironmentError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = "" if allow_pickle else " (if it has only .bin weights: --allow-pickle, if you trust them)"
        raise ModelError(f"{folder}: cannot load the model ({reason}){hint}") from None
    scheduler_config = _read_scheduler_config(folder)
    second = "text_encoder_2" in modules
    return SDComponents(
        **modules,
        tokenizer=_folder_tokenizer(folder, "tokenizer"),
        tokenizer_2=_folder_tokenizer(folder, "tokenizer_2") if second else None,
        noise_scheduler=training_scheduler(family, scheduler_config),
        name=folder.name,
        prediction_type=scheduler_config.get("prediction_type", "epsilon"),
        family=family.name,
    )


def _load_folder_modules(folder: Path, family: ModelFamily, dtype, use_safetensors) -> dict:
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    common = {"local_files_only": True, "use_safetensors": use_safetensors}
    modules = {
        "unet": UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype, **common),
        "vae": AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **common),
    }
    with _no_progress_bar():
        for part, class_name in family.text_encoder_classes.items():
            modules[part] = getattr(transformers, class_name).from_pretrained(folder, subfolder=part, dtype=dtype, **common)
    return modules


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    # transformers draws a "Loading weights" bar even for a 1 MB model; keep the CLI output clean.
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _read_scheduler_config(folder: Path) -> dict:
    config_file = folder / "scheduler" / "scheduler_config.json"
    if not config_file.is_file():
        return {}
    config = json.loads(config_file.read_text(encoding="utf-8"))
    # Keep only the noise-schedule fields; sampler-specific ones (PNDM's skip_prk_steps...) do not apply.
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type")
    return {key: config[key] for key in keep if key in config}


def _folder_tokenizer(folder: Path, part: str):
    """The folder's own tokenizer when it ships one, otherwise the real CLIP tokenizer built offline
    (for SDXL's `tokenizer_2`: the one padding with "!", as SDXL's does)."""
    from lrfind.models.tokenizer import MODEL_MAX_LENGTH, get_clip_tokenizer, get_open_clip_tokenizer

    tokenizer_dir = folder / part
    has_fast = (tokenizer_dir / "tokenizer.json").is_file()
    if has_fast or ((tokenizer_dir / "vocab.json").is_file() and (tokenizer_dir / "merges.txt").is_file()):
        from transformers import CLIPTokenizer

        return CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=MODEL_MAX_LENGTH, local_files_only=True)
    return get_open_clip_tokenizer() if part == "tokenizer_2" else get_clip_tokenizer()
