"""Text conditioning for training and validation: from the cache when possible, live otherwise.

Cached embeddings are only valid when the caption is used as written and the text encoder is
frozen; with caption shuffling or a text-encoder LoRA the embeddings are computed each step
(with gradients when the text encoder trains), as kohya does.
"""

from __future__ import annotations

from typing import Sequence

from lrfind.models.text_encoding import encode_prompts


class TextConditioner:
    def __init__(self, components, memo, *, clip_skip: int, max_token_length: int, trains_text_encoder: bool):
        self.components = components
        # caption -> embedding [L, D], read once from the on-disk cache; empty when not cacheable
        self.memo = memo
        self.clip_skip = clip_skip
        self.max_token_length = max_token_length
        self.trains_text_encoder = trains_text_encoder

    def encode(self, captions: Sequence[str], *, as_written: bool, device):
        """Embeddings [B, L, D]. `as_written`: the captions are the dataset's, unshuffled."""
        import torch

        if as_written and not self.trains_text_encoder and all(c in self.memo for c in captions):
            return torch.stack([self.memo[c] for c in captions]).to(device)

        with torch.set_grad_enabled(self.trains_text_encoder and torch.is_grad_enabled()):
            return encode_prompts(
                self.components, list(captions), clip_skip=self.clip_skip, max_token_length=self.max_token_length
            ).to(device)
