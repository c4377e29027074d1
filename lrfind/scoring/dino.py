"""DINO image embeddings for the study's optional DINO term (`--dino DIR`): likeness of trigger-word
samples to the held-out images, as CLIP-I measures it, with a self-supervised ViT.

The model is a transformers DINO (ViTModel, e.g. facebook/dino-vits16) or DINOv2
(Dinov2Model, Dinov2WithRegistersModel) saved in a local folder; nothing is downloaded.

The embedding is the CLS token of the last hidden state (after the final layer norm), as in
DreamBooth's DINO metric (ViT-S/16 DINO, CLS embedding): DINO's self-distillation trains exactly
that token (its projection head reads it), so it is the image descriptor the model learnt.
ViTModel's `pooler_output` adds a dense + tanh layer DINO never trained (random or absent in DINO
checkpoints); Dinov2Model's `pooler_output` is the same layer-normed CLS token.

DINO is not trained to align images with text, so it tells apart subjects of one class that
CLIP scores alike (DreamBooth's reason for it): it answers "is this the same subject?", not "is
this the same kind of thing?".

Preprocessing: the folder's own preprocessor_config.json (ViT or Bit image processor, PIL
backend: the fast ones need torchvision, which cannot be installed beside the CPU torch here);
without one, DINO's evaluation transform: shorter side to image_size x 256/224 (bicubic),
centre crop image_size, ImageNet mean/std.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lrfind.errors import ModelError
from lrfind.models.loading import _no_progress_bar, offline_hub  # the bar: transformers' "Loading weights"
from lrfind.scoring.image_embeddings import embed_images

# model_type in config.json -> the transformers class that loads it (without a classifier head)
DINO_MODEL_CLASSES = {"vit": "ViTModel", "dinov2": "Dinov2Model", "dinov2_with_registers": "Dinov2WithRegistersModel"}
# image_processor_type in preprocessor_config.json -> its PIL-backend class (a "Fast" suffix is dropped;
# older folders, facebook/dino-vits16's among them, name a feature_extractor_type instead)
PROCESSOR_CLASSES = {"ViTImageProcessor": "ViTImageProcessorPil", "BitImageProcessor": "BitImageProcessorPil"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FIX = ("pass --dino a local folder holding a transformers DINO or DINOv2 model (config.json + model.safetensors), "
       "e.g. facebook/dinov2-small or facebook/dino-vits16 saved with save_pretrained")


@dataclass
class DinoScorer:
    """A DINO ViT with its preprocessing; embeddings come back L2-normalised."""

    model: Any  # transformers ViTModel / Dinov2Model, eval mode, frozen
    image_processor: Any  # transformers ViT or Bit image processor (PIL backend)
    name: str
    device: str = "cpu"

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def image_embeddings(self, images: Sequence) -> "torch.Tensor":  # noqa: F821
        """[N, D] float32 on the CPU, unit length: the CLS token of each PIL image (any size or mode)."""
        return embed_images(images, self.image_processor,
                            lambda pixels: self.model(pixel_values=pixels).last_hidden_state[:, 0],
                            device=self.device, dtype=self.model.dtype, dim=self.embedding_dim)


def dino_similarity(sample_embeddings, reference_embeddings) -> float:
    """Mean cosine over every (sample, reference) pair of unit embeddings: the DINO term, as CLIP-I."""
    if sample_embeddings.shape[0] == 0 or reference_embeddings.shape[0] == 0:
        raise ValueError("DINO needs at least one sample and one reference image")
    return float((sample_embeddings @ reference_embeddings.T).mean())


def check_dino_folder(path, allow_pickle: bool = False) -> str:
    """The folder's model_type, or a one-line ModelError: no folder, no config, not a DINO/ViT model,
    no weights. Cheap (no torch): a study runs it before it opens its database or trains."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelError(f"--dino {folder}: no such folder; {FIX}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"--dino {folder}: no config.json, so not a transformers model folder; {FIX}")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as err:
        raise ModelError(f"{config_file}: not a valid JSON config ({err}); {FIX}") from None
    if model_type not in DINO_MODEL_CLASSES:
        raise ModelError(f"--dino {folder}: config.json describes a {model_type!r} model, not a DINO/ViT image "
                         f"model (model_type {', '.join(map(repr, DINO_MODEL_CLASSES))}); {FIX}")
    if not any(folder.glob("*.safetensors")):
        if not any(folder.glob("*.bin")):
            raise ModelError(f"--dino {folder}: no weights (.safetensors) found; {FIX}")
        if not allow_pickle:
            raise ModelError(f"--dino {folder}: has only pickled weights (.bin), which can run code; "
                             "convert them to .safetensors or pass --allow-pickle if you trust them")
    return model_type


def dino_image_processor(folder: Path, image_size: int):
    """The folder's preprocessing (PIL backend), else DINO's evaluation transform at image_size."""
    import transformers

    config_file = folder / "preprocessor_config.json"
    if config_file.is_file():
        try:
            saved = json.loads(config_file.read_text(encoding="utf-8"))
            kind = str(saved.get("image_processor_type") or saved.get("feature_extractor_type") or "")
        except (ValueError, AttributeError) as err:
            raise ModelError(f"{config_file}: not a valid JSON config ({err}); {FIX}") from None
        name = PROCESSOR_CLASSES.get(kind.removesuffix("Fast").replace("FeatureExtractor", "ImageProcessor"))
        if name is None:
            raise ModelError(f"{config_file}: image_processor_type {kind!r} is not a DINO/ViT preprocessing "
                             f"({', '.join(PROCESSOR_CLASSES)}); delete the file to use DINO's own transform")
        return getattr(transformers, name).from_pretrained(str(folder), local_files_only=True)
    return transformers.BitImageProcessorPil(
        size={"shortest_edge": round(image_size * 256 / 224)}, crop_size={"height": image_size, "width": image_size},
        resample=3, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))  # resample 3: bicubic


def _load_model(folder: Path, model_type: str):
    import transformers

    model_class = getattr(transformers, DINO_MODEL_CLASSES[model_type])
    # ViTModel's pooler is no part of DINO (see the module docstring): not built, so not "missing"
    extra = {"add_pooling_layer": False} if model_type == "vit" else {}
    return model_class.from_pretrained(str(folder), local_files_only=True, output_loading_info=True, **extra)


def load_dino_scorer(path, *, allow_pickle: bool = False, device: str = "cpu") -> DinoScorer:
    """A DINO/DINOv2 model from a local folder (no download); one-line ModelError if it cannot be used."""
    folder = Path(path).expanduser()
    model_type = check_dino_folder(folder, allow_pickle)
    try:
        with offline_hub(), _no_progress_bar():
            model, loading_info = _load_model(folder, model_type)
            processor = dino_image_processor(folder, int(model.config.image_size))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ModelError(f"--dino {folder}: cannot be loaded as a transformers {DINO_MODEL_CLASSES[model_type]} "
                         f"({reason}); {FIX}") from None
    missing = sorted(loading_info.get("missing_keys", ()))
    if missing:
        raise ModelError(f"--dino {folder}: the weights lack {len(missing)} tensors of the model its config.json "
                         f"describes (e.g. {missing[0]}); the download is incomplete or the weights belong to "
                         "another model")
    model.to(device).eval().requires_grad_(False)
    return DinoScorer(model=model, image_processor=processor, name=folder.resolve().name, device=device)
