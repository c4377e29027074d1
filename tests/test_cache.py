"""On-disk caches: the tensor store, VAE latents and text-encoder outputs, on the tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrfind.cache import LatentCache, TensorStore, TextEmbeddingCache, default_cache_dir, file_digest, make_key
from lrfind.cache import store as store_module

# ---------------------------------------------------------------------------------------------
# Store


def _tensors():
    return {"a": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.tensor([1, 2], dtype=torch.int64)}


def test_store_roundtrip_keeps_tensors_and_meta(tmp_path):
    store = TensorStore(tmp_path)
    key = make_key("unit", 1)
    assert store.get(key) is None and store.misses == 1
    path = store.put(key, _tensors(), {"image": "x.png"})
    assert path == tmp_path / key[:2] / f"{key}.safetensors"
    got = store.get(key)
    assert set(got) == {"a", "b"}
    assert torch.equal(got["a"], _tensors()["a"]) and torch.equal(got["b"], _tensors()["b"])
    assert store.hits == 1
    meta = store.metadata(key)
    assert meta["image"] == "x.png" and meta["lrfind_key"] == key and len(meta["lrfind_digest"]) == 40


def _corrupt_by_truncation(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])


def _corrupt_by_flipping_a_data_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor bytes, after the header: only the digest can notice
    path.write_bytes(bytes(data))


def _corrupt_header(path: Path):
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [_corrupt_by_truncation, _corrupt_by_flipping_a_data_byte, _corrupt_header,
                                     lambda p: p.write_bytes(b"")])
def test_store_detects_and_deletes_corrupt_entries(tmp_path, corrupt):
    store = TensorStore(tmp_path)
    key = make_key("unit", "corrupt")
    path = store.put(key, _tensors())
    corrupt(path)
    lookup = store.lookup(key)
    assert lookup.tensors is None and lookup.status == "corrupt"
    assert store.corrupt == 1 and not path.exists()
    assert store.lookup(key).status == "miss"


def test_store_rejects_an_entry_written_for_another_key(tmp_path):
    store = TensorStore(tmp_path)
    key_a, key_b = make_key("a"), make_key("b")
    path_a = store.put(key_a, _tensors())
    path_b = store.path_for(key_b)
    path_b.parent.mkdir(parents=True, exist_ok=True)
    path_b.write_bytes(path_a.read_bytes())  # a valid file, in the wrong place
    assert store.get(key_b) is None and store.corrupt == 1
    assert store.get(key_a) is not None


def test_store_put_that_fails_leaves_no_file(tmp_path, monkeypatch):
    import errno

    from lrfind import atomic
    from lrfind.errors import DiskFullError

    store = TensorStore(tmp_path)
    key = make_key("unit", "fails")

    def half_write_then_fail(path, data):
        Path(path).write_bytes(data[:20])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "write_to_disk", half_write_then_fail)
    with pytest.raises(DiskFullError, match="disk full while writing"):
        store.put(key, _tensors())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert store.get(key) is None and store.corrupt == 0


def test_store_put_failure_keeps_the_previous_entry(tmp_path, monkeypatch):
    from lrfind import atomic

    store = TensorStore(tmp_path)
    key = make_key("unit", "keep")
    store.put(key, _tensors())
    monkeypatch.setattr(atomic, "write_to_disk", lambda *a, **k: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        store.put(key, {"a": torch.zeros(3)})
    assert torch.equal(store.get(key)["a"], _tensors()["a"])
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


def test_make_key_separates_parts_and_types():
    assert make_key("ab", "c") != make_key("a", "bc")
    assert make_key("x", 1) != make_key("x", "1")
    assert make_key("x", (64, 128), True) == make_key("x", (64, 128), True)
    assert make_key("x", (64, 128)) != make_key("x", (128, 64))
    with pytest.raises(ValueError):
        TensorStore("/tmp").path_for("../../etc/passwd")


def test_file_digest_follows_content(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    first = file_digest(path)
    assert file_digest(path) == first
    path.write_bytes(b"two")
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse-clock file systems
    assert file_digest(path) != first
    (tmp_path / "g.bin").write_bytes(b"one")
    assert file_digest(tmp_path / "g.bin") == first


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LRFIND_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("LRFIND_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "lrfind"


# ---------------------------------------------------------------------------------------------
# Latents on the tiny model, over a kohya dataset of real photos

# (skimage photo, crop box (left, top, right, bottom)): square, wide and tall crops -> three buckets.
PHOTOS = [
    ("astronaut", (0, 0, 512, 512)),
    ("coffee", (0, 0, 600, 200)),
    ("chelsea", (0, 0, 451, 300)),
    ("rocket", (200, 0, 400, 427)),
    ("immunohistochemistry", (0, 0, 512, 170)),
]


def _write_dataset(root: Path) -> Path:
    import skimage.data

    folder = root / "2_photo"
    folder.mkdir(parents=True)
    for i, (name, box) in enumerate(PHOTOS):
        Image.fromarray(getattr(skimage.data, name)()).crop(box).save(folder / f"{i:03d}.png")
        (folder / f"{i:03d}.txt").write_text(f"a photo of {name}", encoding="utf-8")
    return root


@pytest.fixture
def records(tmp_path):
    from lrfind.config import DatasetConfig
    from lrfind.data.kohya import scan_dataset

    config = DatasetConfig(train_dir=_write_dataset(tmp_path / "data"), resolution=128, min_bucket_reso=64)
    dataset = scan_dataset(config)
    records = list(dataset.train_images)
    assert len(records) == len(PHOTOS) and len({r.bucket for r in records}) >= 2
    return records


@pytest.fixture
def vae_calls(tiny, monkeypatch):
    """Counts images passed to the shared tiny VAE's encode (the weights are untouched)."""
    calls = []
    original = tiny.vae.encode

    def counting_encode(x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(tiny.vae, "encode", counting_encode)
    return calls


def test_second_pass_encodes_nothing_and_is_bit_identical(tiny, records, vae_calls, tmp_path):
    from lrfind.data.images import load_bucket_image

    first = LatentCache(tiny, TensorStore(tmp_path / "cache"), batch_size=2)
    latents = first.get(records, flip=False)
    assert sum(vae_calls) == len(records) and first.misses == len(records) and first.hits == 0
    for record, latent in zip(records, latents):
        width, height = record.bucket
        assert latent.shape == (4, height // 8, width // 8) and latent.dtype == torch.float32
    # Batches hold one bucket size each, at most batch_size images.
    assert max(vae_calls) <= 2 and len(vae_calls) >= 3

    vae_calls.clear()
    second = LatentCache(tiny, TensorStore(tmp_path / "cache"), batch_size=2)
    again = second.get(records, flip=False)
    assert vae_calls == [] and second.hits == len(records) and second.misses == 0
    assert all(torch.equal(a, b) for a, b in zip(latents, again))
    # The cached value is what an uncached encode gives (mean of the latent distribution, scaled);
    # encoded in another batch it may differ in the last bits (CPU kernels block by batch size).
    fresh = second.encode(records[:1], flip=False)[0]
    assert torch.allclose(fresh, again[0], rtol=0, atol=1e-6)
    with torch.no_grad():
        manual = tiny.vae.encode(load_bucket_image(records[0])[None]).latent_dist.mean[0]
    manual = manual * tiny.vae.config.scaling_factor
    assert torch.allclose(manual, again[0], atol=1e-6)


def test_changed_image_is_re_encoded_alone(tiny, records, vae_calls, tmp_path):
    import skimage.data

    LatentCache(tiny, TensorStore(tmp_path / "cache")).get(records, flip=False)
    changed = records[2]
    Image.fromarray(skimage.data.cat()[::-1].copy()).crop(PHOTOS[2][1]).save(changed.path)  # same size, new pixels
    vae_calls.clear()
    cache = LatentCache(tiny, TensorStore(tmp_path / "cache"))
    cache.get(records, flip=False)
    assert vae_calls == [1] and cache.misses == 1 and cache.hits == len(records) - 1


def test_corrupt_latent_entry_is_rebuilt_equal_to_a_fresh_encode(tiny, records, vae_calls, tmp_path):
    store = TensorStore(tmp_path / "cache")
    cache = LatentCache(tiny, store)
    before = cache.get(records, flip=False)
    _corrupt_by_flipping_a_data_byte(store.path_for(cache.key(records[1], flip=False)))
    vae_calls.clear()
    again = LatentCache(tiny, TensorStore(tmp_path / "cache"))
    after = again.get(records, flip=False)
    assert again.rebuilt == 1 and again.misses == 1 and vae_calls == [1]
    assert torch.equal(after[1], before[1])  # batch_size 1: an entry is a pure function of its key
    assert torch.equal(after[1], again.encode([records[1]], flip=False)[0])
    # The rebuilt entry is valid on disk again.
    third = LatentCache(tiny, TensorStore(tmp_path / "cache"))
    third.get(records, flip=False)
    assert third.hits == len(records) and third.rebuilt == 0


def test_flip_is_a_separate_entry_with_different_latents(tiny, records, tmp_path):
    store = TensorStore(tmp_path / "cache")
    cache = LatentCache(tiny, store)
    plain = cache.get(records[:2], flip=False)
    flipped = cache.get(records[:2], flip=True)
    assert cache.misses == 4 and cache.hits == 0
    assert cache.key(records[0], True) != cache.key(records[0], False)
    assert not torch.allclose(plain[0], flipped[0])
    assert torch.equal(cache.get(records[:1], flip=True)[0], flipped[0]) and cache.hits == 1


def test_other_model_does_not_read_first_models_entries(tiny, records, tmp_path):
    from lrfind.models.tiny import build_tiny

    LatentCache(tiny, TensorStore(tmp_path / "cache")).get(records[:2], flip=False)
    other = build_tiny(seed=1)
    cache = LatentCache(other, TensorStore(tmp_path / "cache"))
    latents = cache.get(records[:2], flip=False)
    assert cache.hits == 0 and cache.misses == 2
    assert not torch.allclose(latents[0], LatentCache(tiny, TensorStore(tmp_path / "cache")).get(records[:1])[0])

    captions = ["a photo of a cat"]
    TextEmbeddingCache(tiny, TensorStore(tmp_path / "cache")).get(captions)
    text = TextEmbeddingCache(other, TensorStore(tmp_path / "cache"))
    text.get(captions)
    assert text.hits == 0 and text.misses == 1


def test_duplicate_records_are_encoded_once(tiny, records, vae_calls, tmp_path):
    cache = LatentCache(tiny, TensorStore(tmp_path / "cache"))
    latents = cache.get([records[0], records[0], records[0]], flip=False)
    assert vae_calls == [1] and cache.misses == 1
    assert torch.equal(latents[0], latents[2])


# ---------------------------------------------------------------------------------------------
# Text-encoder outputs


def test_text_cache_hits_misses_and_clip_skip(tiny, tmp_path):
    captions = ["a photo of a cat", "a cup of coffee, latte art", "a photo of a cat"]
    first = TextEmbeddingCache(tiny, TensorStore(tmp_path / "cache"))
    embeddings = first.get(captions)
    assert first.misses == 2 and first.hits == 0
    hidden = tiny.text_encoder.config.hidden_size
    assert all(e.shape == (77, hidden) and e.dtype == torch.float32 for e in embeddings)
    assert torch.equal(embeddings[0], embeddings[2]) and not torch.allclose(embeddings[0], embeddings[1])

    second = TextEmbeddingCache(tiny, TensorStore(tmp_path / "cache"))
    again = second.get(captions)
    assert second.hits == 2 and second.misses == 0
    assert all(torch.equal(a, b) for a, b in zip(embeddings, again))

    skip2 = TextEmbeddingCache(tiny, TensorStore(tmp_path / "cache"), clip_skip=2)
    skipped = skip2.get(captions[:1])
    assert skip2.misses == 1 and skip2.hits == 0
    assert not torch.allclose(skipped[0], embeddings[0])
    assert torch.equal(skipped[0], skip2.encode(captions[:1])[0])


def test_text_cache_long_captions_and_corruption(tiny, tmp_path):
    long_caption = ", ".join(["a very detailed photo of an astronaut"] * 20)  # > 75 tokens
    store = TensorStore(tmp_path / "cache")
    cache = TextEmbeddingCache(tiny, store, max_token_length=225)
    (embedding,) = cache.get([long_caption])
    assert embedding.shape[0] == 225 + 2  # kohya: BOS + 3 chunks of 75 + EOS
    short = TextEmbeddingCache(tiny, store, max_token_length=75)
    assert short.get([long_caption])[0].shape[0] == 77 and short.misses == 1

    _corrupt_by_truncation(store.path_for(cache.key(long_caption)))
    rebuilt = TextEmbeddingCache(tiny, TensorStore(tmp_path / "cache"), max_token_length=225)
    assert torch.equal(rebuilt.get([long_caption])[0], embedding) and rebuilt.rebuilt == 1


def test_tokenizer_identity_is_stable_and_content_based(tiny):
    import copy

    from lrfind.cache import tokenizer_identity

    identity = tokenizer_identity(tiny.tokenizer)
    assert identity == tokenizer_identity(copy.deepcopy(tiny.tokenizer))
    assert identity.startswith("49408-")
    with_trigger = copy.deepcopy(tiny.tokenizer)
    with_trigger.add_tokens(["<sks>"])
    assert tokenizer_identity(with_trigger) != identity
    shorter = copy.deepcopy(tiny.tokenizer)
    shorter.model_max_length = 64
    assert tokenizer_identity(shorter) != identity


def test_text_cache_stores_no_graph_even_for_a_trainable_text_encoder(tiny, tmp_path):
    import copy
    import dataclasses

    trainable = dataclasses.replace(tiny, text_encoder=copy.deepcopy(tiny.text_encoder).requires_grad_(True),
                                    _fingerprints={})
    (embedding,) = TextEmbeddingCache(trainable, TensorStore(tmp_path / "cache")).get(["a cat"])
    assert not embedding.requires_grad and embedding.grad_fn is None
