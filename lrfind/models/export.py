"""Write a model as a diffusers folder (and one original-layout file); describe a model file.

`lrfind model save tiny|tiny-sdxl DIR` uses this so diffusers, kohya sd-scripts and lrfind itself
can run on exactly the same weights, and so the single-file loader is tested on a real file. SD 1.x
folders are StableDiffusionPipeline's layout, SDXL ones StableDiffusionXLPipeline's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lrfind.atomic import disk_full_as_error, file_mode, folder_mode
from lrfind.config import ModelConfig
from lrfind.errors import ConfigError
from lrfind.models.builtin import RANDOM_BUILTINS, is_builtin
from lrfind.models.components import SDComponents
from lrfind.models.config_dirs import sdxl_config_dir
from lrfind.models.families import ModelFamily, detect_single_file, family_named
from lrfind.models.loading import load_components
from lrfind.models.single_file import read_shapes, write_single_file
from lrfind.models.tiny import SD15_SCHEDULER_CONFIG
from lrfind.models.tokenizer import tokenizer_files_dir
from lrfind.outputs import check_writable_dir


def readable_mode(path: Path) -> None:
    """Give a file or folder made by mkstemp/mkdtemp (private, 0600/0700) the usual umask mode."""
    os.chmod(path, folder_mode() if path.is_dir() else file_mode())


def single_file_name(components: SDComponents) -> str:
    return f"{Path(components.name).stem or 'model'}.safetensors"


def _inference_scheduler(family: ModelFamily):
    """The sampler each family's own release ships, on its noise schedule (training builds its own DDPM):
    SD 1.5's PNDM, SDXL base's Euler (its shipped scheduler_config.json)."""
    if family.name == "sdxl":
        from diffusers import EulerDiscreteScheduler

        return EulerDiscreteScheduler.from_pretrained(str(sdxl_config_dir()), subfolder="scheduler", local_files_only=True)
    from diffusers import PNDMScheduler

    return PNDMScheduler.from_config({**SD15_SCHEDULER_CONFIG, "skip_prk_steps": True, "set_alpha_to_one": False})


def _pipeline(components: SDComponents):
    """The diffusers pipeline of the components' family, holding the very modules (nothing copied)."""
    import diffusers

    family = family_named(components.family)
    common = {"vae": components.vae, "text_encoder": components.text_encoder, "tokenizer": components.tokenizer,
              "unet": components.unet, "scheduler": _inference_scheduler(family)}
    if family.pipeline_class == "StableDiffusionXLPipeline":
        # No watermarker: it needs the invisible-watermark package, and it alters every image.
        return diffusers.StableDiffusionXLPipeline(**common, text_encoder_2=components.text_encoder_2,
                                                   tokenizer_2=components.tokenizer_2, add_watermarker=False)
    return getattr(diffusers, family.pipeline_class)(**common, safety_checker=None, feature_extractor=None,
                                                     requires_safety_checker=False)


def _add_slow_tokenizer_files(tokenizer_dir: Path) -> None:
    # transformers 5 saves only tokenizer.json; transformers 4.x's CLIPTokenizer (which kohya
    # sd-scripts and older diffusers use) needs vocab.json + merges.txt beside it.
    for name in ("vocab.json", "merges.txt"):
        if not (tokenizer_dir / name).exists():
            shutil.copyfile(tokenizer_files_dir() / name, tokenizer_dir / name)


def check_new_folder(target: Path) -> None:
    """Refuse a target that holds anything: saving never replaces what is already there."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target}: already exists and is not empty; pass a new folder or remove it first")
    check_writable_dir(target, "DIR")


def save_model_folder(components: SDComponents, target: Path, single_file: bool = False) -> dict[str, Path]:
    """Write `target` as a diffusers folder (+ `<name>.safetensors` in it); all or nothing.

    Everything is written into a temp folder beside `target` and renamed into place at the end, so
    a crash never leaves a half-written model. An existing non-empty `target` is never replaced.
    """
    target = Path(target)
    check_new_folder(target)
    with disk_full_as_error(target):  # diffusers and safetensors write the files themselves
        return _save_model_folder(components, target, single_file)


def _save_model_folder(components: SDComponents, target: Path, single_file: bool) -> dict[str, Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        _pipeline(components).save_pretrained(str(tmp), safe_serialization=True)
        for tokenizer_dir in (tmp / "tokenizer", tmp / "tokenizer_2"):
            if tokenizer_dir.is_dir():
                _add_slow_tokenizer_files(tokenizer_dir)
        written = {"folder": target}
        if single_file:
            name = single_file_name(components)
            write_single_file(components, tmp / name, metadata={"lrfind_source": components.name})
            written["single_file"] = target / name
        for path in (tmp, *tmp.rglob("*")):
            readable_mode(path)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def _count_by_component(shapes: dict[str, tuple[int, ...]], family) -> dict[str, int]:
    import math

    counts = {part: 0 for part in family.parts}
    for key, shape in shapes.items():
        for part, prefix in family.parts.items():
            if key.startswith(prefix):
                if not key.endswith("position_ids"):
                    counts[part] += math.prod(shape)
                break
    return counts


def describe_model(cfg: ModelConfig) -> dict:
    """Name, source, family, architecture and parameter counts. Single files are read from their header only."""
    path = Path(cfg.model).expanduser()
    if not is_builtin(cfg.model) and path.is_file():
        shapes = read_shapes(path, cfg.allow_pickle)
        family, variant = detect_single_file(shapes, str(path))
        return {
            "name": path.name,
            "source": f"single file ({path.suffix.lower()})",
            "family": family.label,
            "architecture": variant.name,
            "parameters": _count_by_component(shapes, family),
        }

    components = load_components(cfg, for_training=False)
    family = family_named(components.family)
    variant = family.variant_of(family.component_widths(components))
    return {
        "name": components.name,
        "source": _builtin_source(cfg) if is_builtin(cfg.model) else "diffusers folder",
        "family": family.label,
        "architecture": variant.name if variant else f"{family.name}-layout (custom size)",
        "prediction_type": components.prediction_type,
        "parameters": {
            part: sum(p.numel() for p in getattr(components, part).parameters()) for part in family.parts
        },
    }


def _builtin_source(cfg: ModelConfig) -> str:
    if cfg.model in RANDOM_BUILTINS:
        return f"built-in, random init (seed {cfg.seed})"
    return "built-in, trained weights shipped with lrfind (see lrfind/assets/tiny_pretrained/manifest.json)"
