"""Text-encoder outputs per caption, cached on disk per (text encoder, tokenizer, clip skip, length).

Only usable when the text encoder is frozen and captions are fixed; with a trained text encoder
or per-step caption shuffling the training loop encodes every step and does not use this cache.
SDXL (kohya's --cache_text_encoder_outputs): an entry holds both encoders' penultimate states
(concatenated, as the U-Net takes them) and the second encoder's pooled output; its key names
both encoders and both tokenizers. SD 1.x entries and keys are as before SDXL existed.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from lrfind.cache.store import TensorStore, make_key
from lrfind.models.conditioning import PromptEmbedding
from lrfind.models.text_encoding import encode_prompts
from lrfind.models.text_encoding_sdxl import encode_prompts_sdxl

TEXT_FORMAT = "text-v1"
SDXL_TEXT_FORMAT = "text-sdxl-v1"  # kohya's get_hidden_states_sdxl: penultimate states of both, pooled


def tokenizer_identity(tokenizer) -> str:
    """A hash of everything that decides token ids: vocabulary, merges, normalisation, length.

    Takes ~30 ms (it serialises the fast tokenizer); a TextEmbeddingCache computes it once.
    """
    hasher = hashlib.blake2b(digest_size=16)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        hasher.update(backend.to_str().encode("utf-8"))  # vocab, merges, pre/post-processing
    else:  # a slow tokenizer: its vocabulary, plus the files it was read from
        hasher.update(repr(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
        for attr in ("vocab_file", "merges_file"):
            path = getattr(tokenizer, attr, None) or tokenizer.init_kwargs.get(attr)
            if path:
                with open(path, "rb") as fh:
                    hasher.update(fh.read())
    hasher.update(repr((len(tokenizer), tokenizer.model_max_length, tokenizer.pad_token_id)).encode())
    return f"{len(tokenizer)}-{hasher.hexdigest()}"


class TextEmbeddingCache:
    """Hidden states [max_token_length + 2, hidden] (float32, CPU) per caption, encoded once, reused;
    SDXL: with the pooled embedding (`get_embeddings`).

    Counters: `hits`, `misses` (encoded, including rebuilt), `rebuilt` (corrupt entries replaced).
    batch_size 1 (the default) keeps an entry bit for bit a function of its key, as in LatentCache.
    """

    def __init__(self, components, store: TensorStore, clip_skip: int = 1, max_token_length: int = 75,
                 batch_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.components = components
        self.store = store
        self.clip_skip = clip_skip
        self.max_token_length = max_token_length
        self.batch_size = batch_size
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0
        self._tokenizer_identity: str | None = None

    @property
    def sdxl(self) -> bool:
        return self.components.text_encoder_2 is not None

    def key(self, caption: str) -> str:
        if self._tokenizer_identity is None:
            self._tokenizer_identity = tokenizer_identity(self.components.tokenizer)
            if self.sdxl:
                self._tokenizer_identity += "+" + tokenizer_identity(self.components.tokenizer_2)
        if self.sdxl:
            return make_key("text", SDXL_TEXT_FORMAT, self.components.fingerprint("text_encoder"),
                            self.components.fingerprint("text_encoder_2"), self._tokenizer_identity, caption,
                            int(self.clip_skip), int(self.max_token_length))
        return make_key(
            "text",
            TEXT_FORMAT,
            self.components.fingerprint("text_encoder"),
            self._tokenizer_identity,
            caption,
            int(self.clip_skip),
            int(self.max_token_length),
        )

    def get(self, captions: Sequence[str]) -> list:
        """Hidden states [L, D] for each caption, in order (SDXL: both encoders' concatenated)."""
        return [embedding.hidden_states for embedding in self.get_embeddings(captions)]

    def get_embeddings(self, captions: Sequence[str]) -> list[PromptEmbedding]:
        """PromptEmbedding for each caption, in order; misses are encoded in batches and stored."""
        keys = [self.key(c) for c in captions]
        found: dict[str, PromptEmbedding] = {}
        to_encode: dict[str, str] = {}
        for key, caption in zip(keys, captions):
            if key in found or key in to_encode:
                continue
            lookup = self.store.lookup(key)
            if lookup.tensors is not None:
                found[key] = PromptEmbedding(lookup.tensors["hidden_states"], lookup.tensors.get("pooled"))
                self.hits += 1
            else:
                self.rebuilt += lookup.status == "corrupt"
                to_encode[key] = caption
        pending = list(to_encode.items())
        for start in range(0, len(pending), self.batch_size):
            batch = pending[start : start + self.batch_size]
            for (key, caption), embedding in zip(batch, self.encode_embeddings([c for _, c in batch])):
                tensors = {"hidden_states": embedding.hidden_states}
                if embedding.pooled is not None:
                    tensors["pooled"] = embedding.pooled
                self.store.put(key, tensors, {"caption": caption})
                found[key] = embedding
                self.misses += 1
        return [found[k] for k in keys]

    def encode(self, captions: Sequence[str]) -> list:
        """Hidden states of captions, encoded without the cache."""
        return [embedding.hidden_states for embedding in self.encode_embeddings(captions)]

    def encode_embeddings(self, captions: Sequence[str]) -> list[PromptEmbedding]:
        """Encode captions with the text encoder(s), without the cache."""
        import torch

        with torch.no_grad():
            if self.sdxl:
                hidden, pooled = encode_prompts_sdxl(self.components, list(captions),
                                                     max_token_length=self.max_token_length, grad=False)
            else:
                hidden = encode_prompts(
                    self.components, list(captions), clip_skip=self.clip_skip,
                    max_token_length=self.max_token_length, grad=False,
                )
                pooled = None
        hidden = hidden.to(device="cpu", dtype=torch.float32)
        if pooled is None:
            return [PromptEmbedding(h.clone()) for h in hidden]
        pooled = pooled.to(device="cpu", dtype=torch.float32)
        return [PromptEmbedding(h.clone(), p.clone()) for h, p in zip(hidden, pooled)]
