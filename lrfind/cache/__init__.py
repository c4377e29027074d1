"""On-disk caches of VAE latents and text-encoder outputs, keyed by model and content hashes.

Importing this package does not import torch; the caches import it when they encode.
"""

from lrfind.cache.latents import LatentCache
from lrfind.cache.store import TensorStore, check_cache_dir, default_cache_dir, file_digest, make_key
from lrfind.cache.text import TextEmbeddingCache, tokenizer_identity

__all__ = [
    "LatentCache",
    "TensorStore",
    "TextEmbeddingCache",
    "check_cache_dir",
    "default_cache_dir",
    "file_digest",
    "make_key",
    "tokenizer_identity",
]
