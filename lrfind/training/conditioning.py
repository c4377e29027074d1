"""The U-Net's conditioning for training and validation: from the cache when possible, live otherwise.

Cached embeddings are only valid when the caption is used as written and the text encoders are
frozen; with caption shuffling or a text-encoder LoRA the embeddings are computed each step
(with gradients when a text encoder trains), as kohya does. For SDXL the conditioning also holds
the pooled text embedding and each image's size/crop time ids (lrfind.models.size_conditioning).
"""

from __future__ import annotations

from typing import Optional, Sequence

from lrfind.models.conditioning import UNetConditioning
from lrfind.models.text_encoding import encode_prompts
from lrfind.models.text_encoding_sdxl import encode_prompts_sdxl

TimeIds = tuple[int, int, int, int, int, int]


class TextConditioner:
    def __init__(self, components, memo, *, clip_skip: int, max_token_length: int, trains_text_encoder: bool):
        self.components = components
        # caption -> PromptEmbedding, read once from the on-disk cache; empty when not cacheable
        self.memo = memo
        self.clip_skip = clip_skip
        self.max_token_length = max_token_length
        self.trains_text_encoder = trains_text_encoder

    @property
    def needs_time_ids(self) -> bool:
        """SDXL: the U-Net takes size/crop conditioning per image."""
        return self.components.text_encoder_2 is not None

    def encode(self, captions: Sequence[str], *, as_written: bool, device,
               time_ids: Optional[Sequence[TimeIds]] = None) -> UNetConditioning:
        """The conditioning of a batch. `as_written`: the captions are the dataset's, unshuffled;
        `time_ids`: one per caption, required for SDXL (kohya_time_ids of each image)."""
        import torch

        if self.needs_time_ids != (time_ids is not None):
            raise ValueError("time_ids are given exactly for SDXL models, one per caption")
        if as_written and not self.trains_text_encoder and all(c in self.memo for c in captions):
            hidden = torch.stack([self.memo[c].hidden_states for c in captions]).to(device)
            pooled = (torch.stack([self.memo[c].pooled for c in captions]).to(device)
                      if self.needs_time_ids else None)
        else:
            with torch.set_grad_enabled(self.trains_text_encoder and torch.is_grad_enabled()):
                hidden, pooled = self._encode_live(list(captions))
            hidden = hidden.to(device)
            pooled = pooled.to(device) if pooled is not None else None
        if not self.needs_time_ids:
            return UNetConditioning(hidden)
        ids = torch.tensor([list(row) for row in time_ids], dtype=torch.float32, device=device)
        return UNetConditioning(hidden, pooled, ids)

    def _encode_live(self, captions: list[str]):
        if self.needs_time_ids:
            return encode_prompts_sdxl(self.components, captions, max_token_length=self.max_token_length)
        return encode_prompts(self.components, captions, clip_skip=self.clip_skip,
                              max_token_length=self.max_token_length), None
