"""What lrfind knows about one model family (SD 1.x, SDXL), as one frozen object.

Each family module (sd1.py, sdxl.py) defines one `ModelFamily`; lrfind.models.families.registry lists
them. Detection reads only tensor names and shapes (a single file's header) or loaded modules'
configs, so nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class ModelVariant:
    """A size of a family that lrfind has component configs for, told apart by its widths."""

    name: str  # what `lrfind model info` calls it: "sd1", "tiny-sd1", "sdxl", "tiny-sdxl"
    widths: tuple[int, ...]  # the family's width signature (sd1: U-Net, text encoder, VAE channels)
    config_dir: Callable[[], Path]  # diffusers-format component configs: single files load offline


@dataclass(frozen=True)
class ModelFamily:
    """One family: how to recognise it, how to load it, and how kohya names it."""

    name: str  # "sd1"
    label: str  # "SD 1.x", in messages
    example_file: str  # a well-known checkpoint of the family, for messages
    variants: tuple[ModelVariant, ...]
    claims_single_file: Callable[[Shapes], bool]  # from an original-layout file's tensor names/shapes
    single_file_variant: Callable[[Shapes, str], ModelVariant]  # ModelError for a partial/odd file
    component_widths: Callable[[Any], tuple[int, ...]]  # from loaded SDComponents' configs
    claims_folder: Callable[[Mapping[str, Any]], bool]  # from a diffusers folder's model_index.json
    parts: Mapping[str, str]  # component (SDComponents attribute, diffusers subfolder) -> single-file key prefix
    text_encoder_classes: Mapping[str, str]  # text-encoder part -> its transformers class name
    pipeline_class: str  # the diffusers pipeline a saved folder is (model_index.json's _class_name)
    to_original: Callable[[Mapping[str, Any]], dict]  # {part: module} -> one original-layout state dict
    trainable: bool  # False: lrfind loads, describes and saves it, but train/probe/study refuse it
    noise_schedule: Mapping[str, Any]  # DDPM training schedule when a file does not give one
    single_file_prediction_type: str  # what a single file predicts (files do not say)
    base_model_version: str  # kohya's ss_base_model_version of a LoRA trained on it
    kohya_v2: bool  # kohya's ss_v2
    modelspec_architecture: str  # modelspec.architecture of a LoRA trained on it
    kohya_train_script: str  # kohya sd-scripts' LoRA training script for the family (export-kohya)

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_schedule", MappingProxyType(dict(self.noise_schedule)))
        object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))
        object.__setattr__(self, "text_encoder_classes", MappingProxyType(dict(self.text_encoder_classes)))

    def variant_of(self, widths: tuple[int, ...]) -> Optional[ModelVariant]:
        """The variant with these widths, None for a custom size."""
        return next((v for v in self.variants if v.widths == widths), None)
