"""LoRA files in kohya sd-scripts' format: key names, saving with kohya's hashes, loading.

A kohya SD1 LoRA file is a safetensors file whose keys are
`lora_unet_<diffusers module path, "." -> "_">.lora_down.weight` / `.lora_up.weight` / `.alpha`
(and `lora_te_text_model_...` for the text encoder), plus string metadata (`ss_*`,
`modelspec.*`, `sshs_*`). diffusers, ComfyUI and the A1111 webui read exactly this layout.

diffusers has `convert_state_dict_to_kohya`, but it writes alpha = rank whatever alpha was (a LoRA
trained with alpha != dim then loads at the wrong scale), so the mapping is written here.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from io import BytesIO
from pathlib import Path
from typing import Iterable

from lrfind.atomic import write_bytes
from lrfind.errors import ModelError

UNET_PREFIX = "lora_unet_"
TEXT_ENCODER_PREFIX = "lora_te_"
DOWN_SUFFIX = ".lora_down.weight"
UP_SUFFIX = ".lora_up.weight"
ALPHA_SUFFIX = ".alpha"
PART_PREFIXES = {"unet": UNET_PREFIX, "text_encoder": TEXT_ENCODER_PREFIX}
# LyCORIS's tensors (lycoris.kohya files): LoCon's Tucker core, LoHa's and LoKr's factors.
LYCORIS_TENSORS = ("lora_mid.weight", "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1",
                   "hada_t2", "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b",
                   "lokr_t1", "lokr_t2")
# Every key of a kohya or LyCORIS network file (SD1/SD2 text encoder `lora_te_`, SDXL
# `lora_te1_`/`lora_te2_`).
KOHYA_KEY_PATTERN = re.compile(
    r"^lora_(unet|te|te1|te2)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha|"
    + "|".join(re.escape(name) for name in LYCORIS_TENSORS) + r")$"
)
SAVE_PRECISIONS = ("fp16", "bf16", "fp32", "float")


def kohya_module_name(part: str, module_path: str) -> str:
    """The kohya LoRA name of one module, e.g. `lora_unet_down_blocks_0_..._attn1_to_out_0`.

    `module_path` is the module's name inside the UNet or text encoder as `named_modules()`
    gives it. A LoRA wrapper's `.base_layer` is the same module. transformers >= 5.6 dropped the
    `text_model.` level of CLIPTextModel; kohya names (and diffusers' converter) require it.
    """
    module_path = module_path.removesuffix(".base_layer")
    if part == "text_encoder" and not module_path.startswith("text_model."):
        module_path = "text_model." + module_path
    return PART_PREFIXES[part] + module_path.replace(".", "_")


def kohya_name_lookup(part: str, module_paths: Iterable[str]) -> dict[str, str]:
    """Map kohya names back to module paths.

    The reverse of `kohya_module_name` is ambiguous (`to_q` and `transformer_blocks` contain `_`),
    so, as kohya does, names are generated for the model's own modules and matched.
    """
    return {kohya_module_name(part, path): path for path in module_paths}


def lora_names(state_dict: dict) -> list[str]:
    """The LoRA module names of a kohya state dict (keys without their suffix), in file order."""
    return [key[: -len(DOWN_SUFFIX)] for key in state_dict if key.endswith(DOWN_SUFFIX)]


def module_names(state_dict: dict) -> list[str]:
    """Every module name of a kohya or LyCORIS state dict (the key before its first '.')."""
    return list(dict.fromkeys(key.split(".", 1)[0] for key in state_dict))


def file_algo(state_dict: dict) -> str:
    """What kind of network a state dict holds: "loha", "lokr" or "lora" (LoRA or LoCon)."""
    suffixes = {key.split(".", 1)[1] for key in state_dict if "." in key}
    if any(s.startswith("hada_") for s in suffixes):
        return "loha"
    if any(s.startswith("lokr_") for s in suffixes):
        return "lokr"
    return "lora"


def read_dim_and_alpha(state_dict: dict) -> tuple[int, float]:
    """The network_dim and network_alpha of a kohya state dict.

    dim is the most common rank (kohya can save per-block ranks); alpha is that of a module with
    that rank, or the rank itself when the file has no alpha (kohya's default).
    """
    names = lora_names(state_dict)
    if not names:
        raise ValueError("state dict holds no `.lora_down.weight` keys")
    ranks = {name: int(state_dict[name + DOWN_SUFFIX].shape[0]) for name in names}
    dim = Counter(ranks.values()).most_common(1)[0][0]
    name = next(n for n in names if ranks[n] == dim)
    alpha_tensor = state_dict.get(name + ALPHA_SUFFIX)
    alpha = float(alpha_tensor.float().item()) if alpha_tensor is not None else float(dim)
    return dim, alpha


def torch_dtype(precision):
    """fp16 / bf16 / fp32 (or a torch.dtype) -> torch.dtype."""
    import torch

    if isinstance(precision, torch.dtype):
        return precision
    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
             "float": torch.float32}
    if precision not in table:
        raise ValueError(f"save precision {precision!r}: use one of {', '.join(SAVE_PRECISIONS)}")
    return table[precision]


def safetensors_hashes(tensors: dict, metadata: dict[str, str]) -> tuple[str, str]:
    """kohya's `precalculate_safetensors_hashes`: (sshs_model_hash, sshs_legacy_hash).

    The hashes the sd-webui additional-networks extension indexes LoRAs by. Like kohya, only the
    `ss_*` metadata takes part, so editing other metadata later does not change the hash. Model
    hash: sha256 of the file after its header; legacy: sha256 of 64 KiB at offset 1 MiB, 8 chars.
    """
    import safetensors.torch

    training_metadata = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    stream = BytesIO(safetensors.torch.save(tensors, training_metadata))
    header_length = int.from_bytes(stream.read(8), "little")
    stream.seek(8 + header_length)
    model_hash = hashlib.sha256(stream.read()).hexdigest()
    stream.seek(0x100000)
    legacy_hash = hashlib.sha256(stream.read(0x10000)).hexdigest()[0:8]
    return model_hash, legacy_hash


def save_lora(path: str | os.PathLike, state_dict: dict, metadata: dict[str, str],
              dtype="fp16") -> Path:
    """Write a kohya LoRA file atomically, tensors cast to `dtype` (fp16/bf16/fp32).

    Adds kohya's `sshs_model_hash` / `sshs_legacy_hash` to the metadata. A crash never leaves a
    half-written file, and an existing file is replaced only once the new one is complete.
    """
    import safetensors.torch

    bad_keys = [k for k in state_dict if not KOHYA_KEY_PATTERN.match(k)]
    if bad_keys:
        raise ValueError(f"not kohya LoRA keys: {bad_keys[:3]}")
    bad_values = [k for k, v in metadata.items() if not isinstance(v, str)]
    if bad_values:
        raise TypeError(f"metadata values must be strings (kohya's format): {bad_values[:5]}")
    target_dtype = torch_dtype(dtype)
    tensors = {k: v.detach().to("cpu", target_dtype).contiguous() for k, v in state_dict.items()}
    metadata = dict(metadata)
    metadata["sshs_model_hash"], metadata["sshs_legacy_hash"] = safetensors_hashes(tensors, metadata)
    path = Path(path)
    write_bytes(path, safetensors.torch.save(tensors, metadata))  # via Python I/O: a full disk is an OSError
    return path


def load_lora(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """Read a kohya LoRA file: (state dict, metadata). ModelError for anything else."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: LoRA file not found; check the path")
    if path.suffix.lower() != ".safetensors":
        raise ModelError(
            f"{path}: only .safetensors LoRA files are read (pickled .ckpt/.pt/.bin files can run "
            "code); convert it to .safetensors"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state_dict = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(f"{path}: not a readable safetensors file ({reason}); re-save or "
                         "re-download it") from None
    _check_kohya_layout(path, state_dict)
    return state_dict, metadata


def _check_kohya_layout(path: Path, state_dict: dict) -> None:
    bad_keys = [k for k in state_dict if not KOHYA_KEY_PATTERN.match(k)]
    if bad_keys or not state_dict:
        example = f" (e.g. {bad_keys[0]!r})" if bad_keys else " (it is empty)"
        raise ModelError(
            f"{path}: not a kohya-format LoRA file{example}; expected keys like "
            "lora_unet_..._to_q.lora_down.weight, as kohya sd-scripts writes them"
        )
    for name in lora_names(state_dict):
        if name + UP_SUFFIX not in state_dict:
            raise ModelError(f"{path}: {name} has lora_down but no lora_up weight; the file is "
                             "incomplete, re-save it")
    weights = [key for key in state_dict if not key.endswith(ALPHA_SUFFIX)]
    if not weights:
        raise ModelError(f"{path}: only .alpha keys, no weights; the file is incomplete, re-save it")
