"""A content-addressed tensor store on disk: one safetensors file per key, verified on read.

Every file carries in its metadata the key it was written for and a digest of its tensor bytes.
A read recomputes the digest, so a truncated, bit-flipped, hand-edited or misplaced entry is never
handed to a training run: it is deleted, counted and reported as absent, and the caller rebuilds
it. Writes go through `lrfind.atomic`, so a crash mid-write leaves no partial entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lrfind.atomic import write_bytes
from lrfind.outputs import check_writable_dir

KEY_FIELD = "lrfind_key"
DIGEST_FIELD = "lrfind_digest"
SUFFIX = ".safetensors"

LookupStatus = Literal["hit", "miss", "corrupt"]

# (resolved path, size, mtime_ns, ctime_ns, inode) -> digest. Hashing a 5 MB photo takes ~10 ms;
# a study reads every image once per trial, so a process remembers what it already hashed.
_FILE_DIGESTS: dict[tuple, str] = {}


def default_cache_dir() -> Path:
    """$LRFIND_CACHE_DIR, else ~/.cache/lrfind (the same root the tokenizer files use)."""
    env = os.environ.get("LRFIND_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lrfind"


def check_cache_dir(cache_dir) -> Path:
    """The cache folder a run will use (--cache-dir, else the default), checked writable."""
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    check_writable_dir(path, "--cache-dir" if cache_dir is not None else "the cache folder (--cache-dir, "
                                                                         "LRFIND_CACHE_DIR or ~/.cache/lrfind)")
    return path


def file_digest(path: str | os.PathLike) -> str:
    """blake2b of a file's bytes, memoised per process while its size and timestamps are unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    memo_key = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    digest = _FILE_DIGESTS.get(memo_key)
    if digest is None:
        hasher = hashlib.blake2b(digest_size=20)
        with open(path, "rb") as fh:  # hashlib.file_digest would need Python 3.11
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        _FILE_DIGESTS[memo_key] = digest
    return digest


def make_key(*parts: Any) -> str:
    """A 40-hex-digit key from strings, numbers, booleans, tuples and lists (order matters)."""
    # JSON gives a stable, unambiguous encoding: ("ab", "c") and ("a", "bc") differ.
    encoded = json.dumps(list(parts), separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.blake2b(encoded, digest_size=20).hexdigest()


def tensors_digest(tensors: dict) -> str:
    """blake2b over the names, dtypes, shapes and raw bytes of a dict of tensors."""
    import torch

    digest = hashlib.blake2b(digest_size=20)
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Lookup:
    tensors: dict | None
    status: LookupStatus


class TensorStore:
    """Tensors on disk under `root/<key[:2]>/<key>.safetensors`.

    Counters: `hits`, `misses` (no file), `corrupt` (a file that failed verification and was deleted).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    @classmethod
    def default(cls) -> "TensorStore":
        return cls(default_cache_dir() / "tensors")

    def path_for(self, key: str) -> Path:
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"cache key {key!r} is not a hex digest (use make_key)")
        # Two-character shards keep folders small (a large dataset has tens of thousands of entries).
        return self.root / key[:2] / f"{key}{SUFFIX}"

    def get(self, key: str) -> dict | None:
        """The tensors stored under `key`, or None when absent or corrupt (a corrupt file is deleted)."""
        return self.lookup(key).tensors

    def lookup(self, key: str) -> Lookup:
        """Like `get`, but also says whether the entry was a hit, absent, or corrupt."""
        path = self.path_for(key)
        if not path.is_file():
            self.misses += 1
            return Lookup(None, "miss")
        tensors = _read_verified(path, key)
        if tensors is None:
            self.corrupt += 1
            path.unlink(missing_ok=True)
            return Lookup(None, "corrupt")
        self.hits += 1
        return Lookup(tensors, "hit")

    def put(self, key: str, tensors: dict, meta: dict[str, str] | None = None) -> Path:
        """Store `tensors` under `key` atomically; `meta` adds string metadata (kept in the file)."""
        import safetensors.torch

        path = self.path_for(key)
        tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        metadata = {str(k): str(v) for k, v in (meta or {}).items()}
        metadata[KEY_FIELD] = key
        metadata[DIGEST_FIELD] = tensors_digest(tensors)
        write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))
        return path

    def metadata(self, key: str) -> dict[str, str] | None:
        """The metadata of an entry, unverified (for inspection and reports)."""
        from safetensors import safe_open

        path = self.path_for(key)
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})


def _read_verified(path: Path, key: str) -> dict | None:
    """Load a safetensors file; None unless it parses, names `key` and its digest matches."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    # safetensors raises its own SafetensorError (and OSError / ValueError on odd files); any
    # failure to read means the same thing here: the entry is unusable and gets rebuilt.
    except Exception:  # noqa: BLE001
        return None
    if metadata.get(KEY_FIELD) != key or metadata.get(DIGEST_FIELD) != tensors_digest(tensors):
        return None
    return tensors
