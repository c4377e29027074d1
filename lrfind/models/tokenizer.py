"""The real CLIP tokenizer (openai CLIP BPE, as Stable Diffusion 1.x uses it), built with no download.

The BPE vocabulary comes from the file `bpe_simple_vocab_16e6.txt.gz` that the open-clip-torch
package ships (installed with --no-deps, because its dependencies would replace the CPU torch). We
locate that file without importing open_clip (its import needs torchvision), turn it into the
vocab.json + merges.txt pair that transformers' CLIPTokenizer reads, and keep those in a cache
folder. The token ids match openai/clip-vit-large-patch14's tokenizer.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from lrfind.atomic import write_text
from lrfind.errors import ModelError

BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # the part of the BPE file CLIP uses (as open_clip and openai slice it)
MODEL_MAX_LENGTH = 77
OPEN_CLIP_PAD_TOKEN = "!"  # open_clip pads with token 0, which is "!"; SDXL's tokenizer_2 says so


def bpe_vocabulary_path() -> Path:
    """Where open_clip's BPE file lies, found without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / BPE_FILE_NAME
            if candidate.is_file():
                return candidate
    raise ModelError(
        f"the CLIP BPE vocabulary ({BPE_FILE_NAME}) was not found: "
        "install it with `pip install --no-deps open-clip-torch` (see README)"
    )


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's reversible byte -> printable-character table (the same as GPT-2's).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_vocab_and_merges(bpe_gz: Path) -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def tokenizer_files_dir() -> Path:
    """A folder holding vocab.json + merges.txt, written once (atomically) and reused."""
    root = Path(os.environ.get("LRFIND_CACHE_DIR", Path.home() / ".cache" / "lrfind"))
    folder = root / "clip-tokenizer"
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    if not (vocab_file.is_file() and merges_file.is_file()):
        vocab, merges = build_vocab_and_merges(bpe_vocabulary_path())
        write_text(merges_file, "#version: 0.2\n" + "\n".join(merges) + "\n")
        write_text(vocab_file, json.dumps(vocab, ensure_ascii=False))
    return folder


@lru_cache(maxsize=1)
def get_clip_tokenizer():
    """The CLIP tokenizer of SD 1.x: pads with <|endoftext|> (49407) to 77 tokens."""
    from transformers import CLIPTokenizer

    folder = tokenizer_files_dir()
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MODEL_MAX_LENGTH, local_files_only=True)


@lru_cache(maxsize=1)
def get_open_clip_tokenizer():
    """SDXL's second tokenizer (for OpenCLIP ViT-bigG): the same BPE, but pads with "!" (id 0)."""
    from transformers import CLIPTokenizer

    folder = tokenizer_files_dir()
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MODEL_MAX_LENGTH, pad_token=OPEN_CLIP_PAD_TOKEN,
                                         local_files_only=True)


def clean_prompt(text: str) -> str:
    """Repair text as the CLIP tokenizer of SD trainers does before BPE (curly quotes, &amp;, mojibake).

    transformers 4.x's CLIPTokenizer (what kohya sd-scripts and diffusers ran, with ftfy installed)
    and open_clip both pass text through ftfy.fix_text; transformers 5's CLIPTokenizer is the
    tokenizers-backed one that skips it, so call this on a prompt before tokenizing it.
    """
    import ftfy

    return ftfy.fix_text(text)


def count_tokens(text: str) -> int:
    """Number of BPE tokens of a caption, without the start/end tokens (kohya's 75-token limit)."""
    ids = get_clip_tokenizer()(clean_prompt(text), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    return len(ids)
