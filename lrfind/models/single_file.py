"""Single-file Stable Diffusion checkpoints (`.safetensors`, `.ckpt`; SD 1.x and SDXL): detect, load, write.

Loading goes through diffusers' own single-file converters (`from_single_file` with a state dict
and our local config folder), so the key mapping is the one the ecosystem uses and nothing is
fetched. Writing uses the family's `to_original` (lrfind.models.to_original, to_original_sdxl), the
inverse mapping diffusers does not ship.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lrfind.errors import ModelError
from lrfind.models.families import detect_single_file, family_named
from lrfind.models.to_original import TEXT_ENCODER_PREFIX
from lrfind.models.to_original_sdxl import CLIP_L_PREFIX

SAFETENSORS_SUFFIXES = (".safetensors",)
CLIP_PREFIXES = (TEXT_ENCODER_PREFIX, CLIP_L_PREFIX)  # CLIP ViT-L in SD 1.x files, in SDXL files
PART_LABELS = {"unet": "U-Net", "vae": "VAE", "text_encoder": "text encoder", "text_encoder_2": "second text encoder"}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def read_shapes(path: Path, allow_pickle: bool = False) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape. For .safetensors only the header is read (fast even for 4 GB files)."""
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except Exception as err:  # noqa: BLE001 - safetensors raises several types for bad files
            raise _corrupt_safetensors(path, err) from None
    return {key: tuple(value.shape) for key, value in read_state_dict(path, allow_pickle).items()}


def read_state_dict(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """All tensors of a checkpoint file, on CPU. Pickles only with allow_pickle, and then weights-only."""
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001
            raise _corrupt_safetensors(path, err) from None
    if suffix in PICKLE_SUFFIXES:
        return _read_pickle(path, allow_pickle)
    raise ModelError(
        f"{path}: unknown model file type {suffix or '(none)'!r}; pass a .safetensors file, "
        "a .ckpt (with --allow-pickle), a diffusers folder (with model_index.json) or `tiny`"
    )


def _corrupt_safetensors(path: Path, err: Exception) -> ModelError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ModelError(f"{path}: not a readable .safetensors file ({reason}); it may be truncated: download it again")


def _read_pickle(path: Path, allow_pickle: bool) -> dict[str, Any]:
    if not allow_pickle:
        raise ModelError(
            f"{path}: {path.suffix} files are Python pickles and can run code when loaded; "
            "use the .safetensors version of the model, or pass --allow-pickle if you trust the file"
        )
    import pickle

    import torch

    try:
        # weights_only refuses anything but tensors and plain containers: no code runs.
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).splitlines()[0]
        raise ModelError(
            f"{path}: holds Python objects besides weights, refused even with --allow-pickle ({reason}); "
            "convert it to .safetensors with a tool you trust"
        ) from None
    except Exception as err:  # noqa: BLE001 - truncated zip, not a torch file, ...
        raise ModelError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err}); download it again") from None
    while isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]  # Lightning checkpoints nest the weights
    if not isinstance(checkpoint, dict):
        raise ModelError(f"{path}: does not hold a state dict of weights; pass a Stable Diffusion checkpoint")
    return {key: value for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}


def detect_architecture(shapes: Mapping[str, tuple[int, ...]], source: str = "checkpoint") -> str:
    """The model variant's name ('sd1', 'tiny-sd1', 'sdxl', 'tiny-sdxl': lrfind.models.families);
    ModelError naming the family for anything else."""
    _family, variant = detect_single_file(shapes, source)
    return variant.name


def _with_text_model_level(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Old checkpoints store `cond_stage_model.transformer.embeddings.*` without `text_model.`."""
    fixed = {}
    for key, value in state_dict.items():
        prefix = next((p for p in CLIP_PREFIXES if key.startswith(p)), None)
        if prefix is not None and not key.startswith(prefix + "text_model."):
            key = prefix + "text_model." + key[len(prefix):]
        fixed[key] = value
    return fixed


def load_single_file(path: Path, allow_pickle: bool = False, dtype=None) -> tuple[dict[str, Any], str]:
    """({part: module}, variant name) from one original-layout SD 1.x or SGM-layout SDXL file, offline.

    Uses the file's own weights bit for bit, then casts to `dtype` (None: keep the file's dtype).
    """
    state_dict = _with_text_model_level(read_state_dict(path, allow_pickle))
    family, variant = detect_single_file({k: tuple(v.shape) for k, v in state_dict.items()}, str(path))
    config = str(variant.config_dir())
    _require_expected_weights(state_dict, config, family, variant.name, path)
    # dtype is applied after the completeness check: casting a module with a missing (meta) weight fails.
    try:
        modules = _convert(state_dict, config, family)
    except (ValueError, KeyError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"{path}: the weights do not fit the {variant.name} layout ({reason}); is the file complete?") from None
    for part, module in modules.items():
        _require_all_weights(module, PART_LABELS[part], path)
        cast(module, dtype)
    return modules, variant.name


def _convert(state_dict: dict[str, Any], config: str, family) -> dict[str, Any]:
    """diffusers' own single-file converters, fed our local config folder (so nothing is fetched).

    create_diffusers_clip_model_from_ldm picks the converter from the keys: CLIP ViT-L as is
    (convert_ldm_clip_checkpoint), OpenCLIP through convert_open_clip_checkpoint (in_proj split,
    text_projection transposed), telling SDXL's two encoders apart by their widths.
    """
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

    common = {"config": config, "torch_dtype": None, "local_files_only": True}
    modules = {
        "unet": UNet2DConditionModel.from_single_file(state_dict, subfolder="unet", **common),
        "vae": AutoencoderKL.from_single_file(state_dict, subfolder="vae", **common),
    }
    for part, class_name in family.text_encoder_classes.items():
        modules[part] = create_diffusers_clip_model_from_ldm(getattr(transformers, class_name), state_dict,
                                                             subfolder=part, **common)
    return modules


def expected_original_shapes(config_dir: str, family) -> dict[str, tuple[int, ...]]:
    """Original-layout key -> shape of the model a config folder describes (built on the meta device)."""
    import transformers
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with init_empty_weights():
        modules = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir, subfolder="unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir, subfolder="vae")),
        }
        for part, class_name in family.text_encoder_classes.items():
            text_config = transformers.CLIPTextConfig.from_pretrained(config_dir, subfolder=part)
            modules[part] = getattr(transformers, class_name)(text_config)
    return {key: tuple(value.shape) for key, value in family.to_original(modules).items()}


def _squeezed(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    while len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _require_expected_weights(state_dict: Mapping[str, Any], config_dir: str, family, architecture: str,
                              path: Path) -> None:
    # diffusers' converters skip what a file lacks and leave those weights uninitialised; check first.
    expected = expected_original_shapes(config_dir, family)
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise ModelError(
            f"{path}: {len(missing)} weight(s) of the {architecture} model are missing (first: {missing[0]}); "
            "the file is incomplete: download it again"
        )
    # Trailing 1-dims are ignored: files differ in storing VAE attention projections as 1x1 convs or linears.
    wrong = [key for key, shape in expected.items() if _squeezed(state_dict[key].shape) != _squeezed(shape)]
    if wrong:
        raise ModelError(
            f"{path}: weight {wrong[0]} has shape {tuple(state_dict[wrong[0]].shape)}, expected {expected[wrong[0]]} "
            f"for {architecture}; this model variant is not supported"
        )


def cast(module, dtype) -> None:
    """module.to(dtype) when needed, without diffusers' warning that it gives on every dtype cast
    (it lists modules to keep in float32; SD 1.x and SDXL components have none)."""
    import logging

    if dtype is None or module.dtype == dtype:
        return
    logger = logging.getLogger("diffusers.models.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        module.to(dtype)
    finally:
        logger.setLevel(level)


def _require_all_weights(module, part: str, path: Path) -> None:
    # diffusers leaves a weight missing from the file on the meta device instead of failing.
    missing = [name for name, tensor in module.state_dict().items() if tensor.is_meta]
    if missing:
        raise ModelError(f"{path}: the {part} weight {missing[0]} (and {len(missing) - 1} more) is missing; the file is incomplete")


def components_to_original(components) -> dict[str, Any]:
    """One original-layout state dict of an SDComponents (its family's layout), tensors contiguous."""
    state = family_named(components.family).to_original(components.modules())
    return {key: value.detach().contiguous() for key, value in state.items()}


def write_single_file(components, target: Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Write an SDComponents as one original-layout .safetensors file, atomically."""
    from safetensors.torch import save_file

    from lrfind.atomic import atomic_path

    state_dict = components_to_original(components)
    with atomic_path(target) as tmp:
        save_file(state_dict, str(tmp), metadata={"format": "pt", **(metadata or {})})
    return target
