"""CLIP image and text embeddings for scoring trial samples (CLIP-I, CLIP-T).

Two sources: a transformers CLIPModel saved in a local folder (`--clip PATH`; nothing is
downloaded), or a tiny random CLIP built from a seed for tests and the tiny-model demo. The tiny
one measures nothing about image content, so its scores are marked uncalibrated.

Image preprocessing is CLIP's own: resize the shorter side (bicubic), centre crop, CLIP mean/std.
It comes from transformers' PIL-backend CLIPImageProcessor: the default (fast) processor of
transformers 5 needs torchvision, which cannot be installed beside the CPU torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lrfind.errors import ModelError
from lrfind.models.builtin import is_builtin
from lrfind.models.loading import offline_hub
from lrfind.models.tokenizer import clean_prompt, get_clip_tokenizer
from lrfind.scoring.image_embeddings import EMBEDDING_BATCH, embed_images, normalised

TINY_CLIP_NAME = "tiny-random-clip"
TINY_CLIP_IMAGE_SIZE = 64

# Text side as the tiny SD text encoder (real vocabulary, 77 positions); vision side 64 px in
# 16 px patches (a 4x4 grid), the smallest shape that still looks at the whole sample.
TINY_CLIP_TEXT_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}
TINY_CLIP_VISION_CONFIG = {
    "image_size": TINY_CLIP_IMAGE_SIZE,
    "patch_size": 16,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "hidden_act": "quick_gelu",
}
TINY_CLIP_PROJECTION_DIM = 32


def clip_image_processor(image_size: int, folder: Path | None = None):
    """CLIP's preprocessing at `image_size`, or as saved in `folder`'s preprocessor_config.json."""
    try:  # transformers >= 5: the PIL/numpy backend, which needs no torchvision
        from transformers import CLIPImageProcessorPil as processor_class
    except ImportError:  # transformers 4.x: CLIPImageProcessor is the PIL/numpy one
        from transformers import CLIPImageProcessor as processor_class

    if folder is not None and (folder / "preprocessor_config.json").is_file():
        return processor_class.from_pretrained(str(folder), local_files_only=True)
    return processor_class(size={"shortest_edge": image_size},
                           crop_size={"height": image_size, "width": image_size})


@dataclass
class ClipScorer:
    """A CLIP model with its tokenizer and preprocessing; embeddings come back L2-normalised.

    `calibrated` is False for the random tiny CLIP: its similarities only rank samples of one
    study against each other and must be labelled as such wherever they are shown.
    """

    model: Any  # transformers.CLIPModel, eval mode, frozen
    tokenizer: Any  # transformers.CLIPTokenizer
    image_processor: Any  # transformers CLIP image processor (PIL backend)
    name: str
    calibrated: bool
    device: str = "cpu"

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def image_embeddings(self, images: Sequence) -> "torch.Tensor":  # noqa: F821
        """[N, D] float32 on the CPU, unit length, one row per PIL image (any size or mode)."""
        # The submodules directly: get_image_features returns a tensor in transformers 4 and an
        # output object in 5.
        return embed_images(images, self.image_processor,
                            lambda pixels: self.model.visual_projection(self.model.vision_model(pixel_values=pixels).pooler_output),
                            device=self.device, dtype=self.model.dtype, dim=self.embedding_dim)

    def text_embeddings(self, texts: Sequence[str]) -> "torch.Tensor":  # noqa: F821
        """[N, D] float32 on the CPU, unit length; texts longer than CLIP's context are cut."""
        import torch

        max_length = int(self.model.config.text_config.max_position_embeddings)
        rows = []
        with torch.no_grad():
            for start in range(0, len(texts), EMBEDDING_BATCH):
                batch = [clean_prompt(text) for text in texts[start:start + EMBEDDING_BATCH]]
                tokens = self.tokenizer(batch, padding="max_length", truncation=True,
                                        max_length=max_length, return_tensors="pt")
                pooled = self.model.text_model(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                ).pooler_output
                rows.append(self.model.text_projection(pooled).float().cpu())
        return normalised(rows, self.embedding_dim)


def tiny_clip_scorer(seed: int = 0) -> ClipScorer:
    """A tiny random CLIP (64 px images, 32-d embeddings); the same seed gives the same weights."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(text_config=TINY_CLIP_TEXT_CONFIG, vision_config=TINY_CLIP_VISION_CONFIG,
                        projection_dim=TINY_CLIP_PROJECTION_DIM)
    # A private generator state so building the model does not disturb the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    model.eval().requires_grad_(False)
    return ClipScorer(model=model, tokenizer=get_clip_tokenizer(),
                      image_processor=clip_image_processor(TINY_CLIP_IMAGE_SIZE),
                      name=TINY_CLIP_NAME, calibrated=False)


def _check_clip_folder(folder: Path, allow_pickle: bool) -> None:
    fix = ("pass --clip a local folder holding a transformers CLIPModel (config.json + "
           "model.safetensors), e.g. one saved with CLIPModel.save_pretrained")
    if not folder.is_dir():
        raise ModelError(f"CLIP model {folder}: no such folder; {fix}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"CLIP model {folder}: no config.json, so not a transformers model folder; {fix}")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as err:
        raise ModelError(f"{config_file}: not a valid JSON config ({err}); {fix}") from None
    if model_type != "clip":
        # transformers would load e.g. a lone CLIP text encoder into CLIPModel with random
        # weights and only a warning; refuse before that.
        raise ModelError(f"CLIP model {folder}: config.json describes a {model_type!r} model, "
                         f"not a full CLIP model (text and image towers, model_type 'clip'); {fix}")
    if not any(folder.glob("*.safetensors")):
        if not any(folder.glob("*.bin")):
            raise ModelError(f"CLIP model {folder}: no weights (.safetensors) found; {fix}")
        if not allow_pickle:
            raise ModelError(
                f"CLIP model {folder}: has only pickled weights (.bin), which can run code; "
                "convert them to .safetensors or pass --allow-pickle if you trust them"
            )


def _load_tokenizer(folder: Path):
    has_tokenizer = any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json"))
    if not has_tokenizer:
        return get_clip_tokenizer()  # every CLIP model of SD's family shares openai's BPE
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def load_clip_scorer(path, *, allow_pickle: bool = False, device: str = "cpu") -> ClipScorer:
    """A CLIPModel from a local folder (no download); one-line ModelError if it cannot be used."""
    folder = Path(path).expanduser()
    _check_clip_folder(folder, allow_pickle)
    from transformers import CLIPModel

    try:
        with offline_hub():
            model, loading_info = CLIPModel.from_pretrained(str(folder), local_files_only=True,
                                                            output_loading_info=True)
            tokenizer = _load_tokenizer(folder)
            processor = clip_image_processor(model.config.vision_config.image_size, folder)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ModelError(
            f"CLIP model {folder}: cannot be loaded as a transformers CLIPModel ({reason}); "
            "pass a folder saved from a CLIP model (e.g. openai/clip-vit-large-patch14)"
        ) from None
    missing = sorted(loading_info.get("missing_keys", ()))
    if missing:
        raise ModelError(f"CLIP model {folder}: the weights lack {len(missing)} tensors of the model its "
                         f"config.json describes (e.g. {missing[0]}); the download is incomplete or the "
                         "weights belong to another model")
    model.to(device).eval().requires_grad_(False)
    return ClipScorer(model=model, tokenizer=tokenizer, image_processor=processor,
                      name=folder.resolve().name, calibrated=True, device=device)


def scorer_for(components, clip_path: Path | None, *, allow_pickle: bool = False) -> ClipScorer | None:
    """The CLIP a run scores with: the local model at clip_path, else the tiny random CLIP for the
    built-in tiny models, else None (a real model without a real CLIP: the caller decides what that means)."""
    if clip_path is not None:
        return load_clip_scorer(clip_path, allow_pickle=allow_pickle)
    return tiny_clip_scorer(seed=0) if is_builtin(components.name) else None
