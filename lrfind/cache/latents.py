"""VAE latents of dataset images, cached on disk per (VAE, image content, bucket, flip).

Deterministic latents: we store the MEAN of the VAE's latent distribution. kohya sd-scripts
caches `vae.encode(x).latent_dist.sample()` (library/strategy_sd.py), i.e. one random draw that it
then reuses for every epoch; the draw differs from the mean by exp(logvar / 2) * noise, which for
SD's VAE is tiny next to the latents themselves. The mean makes a cache entry a pure function of
its key, so a rebuilt entry equals the one it replaces and a cached run equals an uncached one
(which the tests check bit for bit). diffusers' training scripts make the same choice optional.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from lrfind.cache.store import TensorStore, file_digest, make_key
from lrfind.data.images import load_bucket_image
from lrfind.data.types import ImageRecord

# Bump when the way latents are computed changes, so old entries are never read.
LATENT_FORMAT = "mean-scaled-v1"


class LatentCache:
    """Scaled latents [4, H/8, W/8] (float32, CPU) for image records, encoded once and reused.

    Counters: `hits` (read from disk), `misses` (encoded, including rebuilt ones), `rebuilt`
    (entries that were on disk but corrupt, deleted and encoded again).

    batch_size: images per VAE call (one bucket size per call). With 1, the default, an entry is
    bit for bit a function of its key; in larger batches CPU kernels block differently and the
    last bits (~1e-7 relative) depend on the batch's other images. On CPU batching gains little
    (see benchmarks/cache.py); on a GPU pass a larger batch.
    """

    def __init__(self, components, store: TensorStore, batch_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.components = components
        self.store = store
        self.batch_size = batch_size
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0

    def key(self, record: ImageRecord, flip: bool) -> str:
        return make_key(
            "latents",
            LATENT_FORMAT,
            self.components.fingerprint("vae"),
            file_digest(record.path),
            tuple(record.bucket),
            tuple(record.resized),
            bool(flip),
        )

    def get(self, records: Sequence[ImageRecord], flip: bool = False) -> list:
        """Latents for each record, in order; misses are encoded in batches of one bucket size."""
        keys = [self.key(r, flip) for r in records]
        found: dict[str, object] = {}
        to_encode: dict[str, ImageRecord] = {}  # a record listed twice is encoded once
        for key, record in zip(keys, records):
            if key in found or key in to_encode:
                continue
            lookup = self.store.lookup(key)
            if lookup.tensors is not None:
                found[key] = lookup.tensors["latents"]
                self.hits += 1
            else:
                self.rebuilt += lookup.status == "corrupt"
                to_encode[key] = record
        found.update(self._encode_and_store(to_encode, flip))
        return [found[k] for k in keys]

    def _encode_and_store(self, to_encode: dict[str, ImageRecord], flip: bool) -> dict:
        by_bucket: dict[tuple, list[str]] = defaultdict(list)
        for key, record in to_encode.items():
            by_bucket[tuple(record.bucket)].append(key)
        encoded = {}
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), self.batch_size):
                batch_keys = keys[start : start + self.batch_size]
                latents = self.encode([to_encode[k] for k in batch_keys], flip)
                for key, latent in zip(batch_keys, latents):
                    record = to_encode[key]
                    meta = {"image": str(record.path), "bucket": "x".join(map(str, bucket)), "flip": str(flip)}
                    self.store.put(key, {"latents": latent}, meta)
                    encoded[key] = latent
                    self.misses += 1
        return encoded

    def encode(self, records: Sequence[ImageRecord], flip: bool) -> list:
        """Encode records of ONE bucket size with the VAE, without the cache."""
        import torch

        vae = self.components.vae
        param = next(vae.parameters())
        pixels = torch.stack([load_bucket_image(r, flip=flip) for r in records])
        with torch.no_grad():
            dist = vae.encode(pixels.to(device=param.device, dtype=param.dtype)).latent_dist
            latents = dist.mean
            shift = getattr(vae.config, "shift_factor", None)  # None for SD 1.x; kept for other VAEs
            if shift is not None:
                latents = latents - shift
            latents = latents * vae.config.scaling_factor
        latents = latents.to(device="cpu", dtype=torch.float32)
        return [latent.clone() for latent in latents]  # unbound from the batch's storage
