"""Text-encoder outputs per caption, cached on disk per (text encoder, tokenizer, clip skip, length).

Only usable when the text encoder is frozen and captions are fixed; with a trained text encoder
or per-step caption shuffling the training loop encodes every step and does not use this cache.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from lrfind.cache.store import TensorStore, make_key
from lrfind.models.text_encoding import encode_prompts

TEXT_FORMAT = "text-v1"


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
    """Hidden states [max_token_length + 2, hidden] (float32, CPU) per caption, encoded once, reused.

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

    def key(self, caption: str) -> str:
        if self._tokenizer_identity is None:
            self._tokenizer_identity = tokenizer_identity(self.components.tokenizer)
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
        """Embeddings for each caption, in order; misses are encoded in batches and stored."""
        keys = [self.key(c) for c in captions]
        found: dict[str, object] = {}
        to_encode: dict[str, str] = {}
        for key, caption in zip(keys, captions):
            if key in found or key in to_encode:
                continue
            lookup = self.store.lookup(key)
            if lookup.tensors is not None:
                found[key] = lookup.tensors["hidden_states"]
                self.hits += 1
            else:
                self.rebuilt += lookup.status == "corrupt"
                to_encode[key] = caption
        pending = list(to_encode.items())
        for start in range(0, len(pending), self.batch_size):
            batch = pending[start : start + self.batch_size]
            for (key, caption), hidden in zip(batch, self.encode([c for _, c in batch])):
                self.store.put(key, {"hidden_states": hidden}, {"caption": caption})
                found[key] = hidden
                self.misses += 1
        return [found[k] for k in keys]

    def encode(self, captions: Sequence[str]) -> list:
        """Encode captions with the text encoder, without the cache."""
        import torch

        with torch.no_grad():
            hidden = encode_prompts(
                self.components, list(captions), clip_skip=self.clip_skip,
                max_token_length=self.max_token_length, grad=False,
            )
        hidden = hidden.to(device="cpu", dtype=torch.float32)
        return [h.clone() for h in hidden]
