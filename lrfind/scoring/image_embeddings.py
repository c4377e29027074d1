"""Image embeddings in batches, unit length: what CLIP-I (lrfind.scoring.clip) and the DINO term
(lrfind.scoring.dino) share; each scorer says only which of its model's outputs is the embedding."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from lrfind.data.images import to_rgb

EMBEDDING_BATCH = 16  # images / texts per forward pass: memory stays flat for any count


def normalised(rows: list, dim: int):
    """The rows stacked and L2-normalised; [0, dim] when there are none."""
    import torch

    if not rows:
        return torch.zeros(0, dim)
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1)


def embed_images(images: Sequence, image_processor: Any, embed: Callable, *, device: str, dtype, dim: int):
    """[N, dim] float32 on the CPU, unit length, one row per PIL image (any size or mode).

    embed: pixel values on the model's device and dtype -> [n, dim] embeddings of that batch."""
    import torch

    rows = []
    with torch.no_grad():
        for start in range(0, len(images), EMBEDDING_BATCH):
            batch = [to_rgb(image) for image in images[start:start + EMBEDDING_BATCH]]
            pixels = image_processor(images=batch, return_tensors="pt")["pixel_values"]
            rows.append(embed(pixels.to(device, dtype)).float().cpu())
    return normalised(rows, dim)
