"""Trial samples: generate images from the validation prompts with a trial's LoRA, score, save.

CLIP-I is the mean cosine similarity between every sample and every reference image (the mean of
the whole [samples x references] matrix): does the LoRA draw the subject? A study's references
are its held-out images (`clip_i_references`): images of the concept no trial trained on, so
CLIP-I rewards the concept, not copies of the training photos; the training images only when
the study holds none out, with a note saying so. CLIP-T is the mean cosine between each sample
and its own prompt (the concept's trigger in a novel scene): does it still follow the prompt?
Both use the same references and the same prompts and seeds in every trial, so they compare trials.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lrfind.atomic import write_bytes
from lrfind.data.images import load_bucket_pil
from lrfind.data.types import Dataset, ImageRecord
from lrfind.network.inference import generate_images

Size = Union[int, tuple[int, int]]


@dataclass(frozen=True)
class SampleScores:
    clip_i: float  # mean cosine, samples vs reference images (a study's held-out ones)
    clip_t: float  # mean cosine, each sample vs its prompt
    images: list  # PIL images, one per prompt
    prompts: list[str]
    seeds: list[int]
    clip_i_per_sample: list[float] = field(default_factory=list)  # row means of the CLIP-I matrix
    clip_t_per_sample: list[float] = field(default_factory=list)
    clip_model: str = ""
    calibrated: bool = True  # False for the tiny random CLIP: say so wherever scores are shown

    def metrics(self) -> dict[str, Any]:
        """JSON-ready numbers for metrics.json and trial attributes (no images)."""
        return {
            "clip_i": self.clip_i,
            "clip_t": self.clip_t,
            "clip_model": self.clip_model,
            "clip_calibrated": self.calibrated,
            "samples": [
                {"prompt": prompt, "seed": seed, "clip_i": ci, "clip_t": ct}
                for prompt, seed, ci, ct in zip(self.prompts, self.seeds,
                                                self.clip_i_per_sample, self.clip_t_per_sample)
            ],
        }


@dataclass(frozen=True)
class ClipReference:
    """The images CLIP-I compares samples with, and where they come from."""

    records: tuple[ImageRecord, ...]
    source: str  # "held-out" or "training"
    note: Optional[str] = None  # why the training images stand in, when they do


def clip_i_references(held_out: Sequence[ImageRecord], dataset: Dataset, limit: int = 8) -> ClipReference:
    """Up to `limit` of the study's held-out images (each concept in turn); the training images
    when none are held out, with a note of what that costs."""
    if held_out:
        concepts: dict[str, list[ImageRecord]] = {}
        for record in held_out:
            concepts.setdefault(record.concept, []).append(record)
        return ClipReference(_round_robin(list(concepts.values()), limit), "held-out")
    return ClipReference(_round_robin([list(c.images) for c in dataset.concepts], limit), "training", (
        "CLIP-I compares samples with the training images: the study holds no image out, so it rewards "
        "LoRAs that copy their training photos; hold images out (--validation-split, --validation-dir) to "
        "score the concept instead"))


def _round_robin(queues: list[list[ImageRecord]], limit: int) -> tuple[ImageRecord, ...]:
    """Up to `limit` records, one from each queue in turn, so a small concept is not crowded out."""
    queues = [list(queue) for queue in queues]
    chosen: list[ImageRecord] = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return tuple(chosen)


def load_reference_images(records: Sequence[ImageRecord]) -> list[Image.Image]:
    """The records' images as trained (bucket size)."""
    return [load_bucket_pil(record) for record in records]


def load_training_images(dataset: Dataset, limit: int = 8) -> list[Image.Image]:
    """Up to `limit` training images as trained (bucket size), taken from each concept in turn.

    Round-robin over the concepts, so a small concept is not crowded out by a large one.
    """
    queues = [list(concept.images) for concept in dataset.concepts]
    chosen = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return [load_bucket_pil(record) for record in chosen]


def _width_height(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def clip_i_matrix(sample_embeddings, reference_embeddings):
    """[samples, references] cosines of unit embeddings; CLIP-I is its mean."""
    return sample_embeddings @ reference_embeddings.T


def clip_t_vector(sample_embeddings, prompt_embeddings):
    """[samples] cosine of each sample with its own prompt (row i with row i); CLIP-T is its mean."""
    if sample_embeddings.shape != prompt_embeddings.shape:
        raise ValueError(f"{sample_embeddings.shape[0]} samples but {prompt_embeddings.shape[0]} prompts")
    return (sample_embeddings * prompt_embeddings).sum(dim=-1)


def render_samples(components, lora_state_dict: Optional[dict], prompts: Sequence[tuple[str, int]], *,
                   size: Size, steps: int, guidance: float, lora_weight: float = 1.0, negative_prompt: str = "",
                   clip_skip: int = 1) -> list:
    """One PIL image per (prompt, seed) with the LoRA merged in (None: the base model); what
    score_samples scores, and what a study without CLIP weights draws for its DINO term."""
    if not prompts:
        raise ValueError("no validation prompts to sample")
    width, height = _width_height(size)
    loras = [(lora_state_dict, lora_weight)] if lora_state_dict is not None else []
    return generate_images(components, [prompt for prompt, _ in prompts], [int(seed) for _, seed in prompts],
                           width=width, height=height, steps=steps, guidance_scale=guidance,
                           negative_prompt=negative_prompt, loras=loras, clip_skip=clip_skip)


def score_samples(
    components,
    lora_state_dict: Optional[dict],
    prompts: Sequence[tuple[str, int]],
    train_images,
    scorer,
    *,
    size: Size,
    steps: int,
    guidance: float,
    lora_weight: float = 1.0,
    negative_prompt: str = "",
    clip_skip: int = 1,
    prompt_embeddings=None,
) -> SampleScores:
    """Generate one image per (prompt, seed) with the LoRA merged in, and CLIP-score them.

    `lora_state_dict` is a kohya state dict (its alpha tensors give the scale); None samples the
    base model. `train_images` are PIL images, or their embeddings from
    `scorer.image_embeddings(...)` (a tensor [M, D]) so a study embeds them only once; likewise
    `prompt_embeddings`, the CLIP text embeddings of the prompts (None: embedded here).
    The model's weights are exactly as before afterwards (see network.inference.applied_loras).
    """
    import torch

    images = render_samples(components, lora_state_dict, prompts, size=size, steps=steps, guidance=guidance,
                            lora_weight=lora_weight, negative_prompt=negative_prompt, clip_skip=clip_skip)
    texts = [prompt for prompt, _ in prompts]
    seeds = [int(seed) for _, seed in prompts]
    reference = train_images if isinstance(train_images, torch.Tensor) else scorer.image_embeddings(train_images)
    if reference.shape[0] == 0:
        raise ValueError("no training images to compare the samples with (CLIP-I)")
    generated = scorer.image_embeddings(images)
    image_similarity = clip_i_matrix(generated, reference)
    if prompt_embeddings is None:
        prompt_embeddings = scorer.text_embeddings(texts)
    text_similarity = clip_t_vector(generated, prompt_embeddings)
    return SampleScores(
        clip_i=float(image_similarity.mean()),
        clip_t=float(text_similarity.mean()),
        images=images,
        prompts=texts,
        seeds=seeds,
        clip_i_per_sample=[float(v) for v in image_similarity.mean(dim=1)],
        clip_t_per_sample=[float(v) for v in text_similarity],
        clip_model=scorer.name,
        calibrated=scorer.calibrated,
    )


def save_png(image: Image.Image, path, text: Optional[dict[str, str]] = None) -> Path:
    """Write a PNG atomically, with optional text chunks (prompt, seed) readable by image viewers."""
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, str(value))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    write_bytes(path, buffer.getvalue())
    return Path(path)


def save_samples(images: Sequence[Image.Image], folder, prompts: Sequence[str] = (),
                 seeds: Sequence[int] = ()) -> list[Path]:
    """`folder/sample_00.png`, ... one PNG per image, each carrying its prompt and seed if given."""
    paths = []
    for index, image in enumerate(images):
        text = {}
        if index < len(prompts):
            text["prompt"] = prompts[index]
        if index < len(seeds):
            text["seed"] = str(seeds[index])
        paths.append(save_png(image, Path(folder) / f"sample_{index:02d}.png", text))
    return paths


def sample_grid(images: Sequence[Image.Image], columns: Optional[int] = None) -> Image.Image:
    """The images side by side, row by row, in cells of the largest image's size (black gaps)."""
    if not images:
        raise ValueError("no images to put in a grid")
    columns = columns or min(len(images), 4)
    rows = math.ceil(len(images) / columns)
    cell_width = max(image.width for image in images)
    cell_height = max(image.height for image in images)
    grid = Image.new("RGB", (columns * cell_width, rows * cell_height))
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid.paste(image.convert("RGB"), (column * cell_width, row * cell_height))
    return grid


def save_sample_grid(images: Sequence[Image.Image], path, columns: Optional[int] = None) -> Path:
    """One PNG with all samples in a grid (up to 4 per row unless `columns` is given), atomically."""
    return save_png(sample_grid(images, columns), path)
