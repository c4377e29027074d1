"""`tiny-pretrained`: the tiny SD 1.x architecture with weights trained on real photographs.

A stand-in with a real prior, not a substitute for SD 1.5: a 1.1 M-parameter UNet, a 0.37 M VAE
and a 5-layer CLIP text encoder (hidden 32), all three trained by
`scripts/train_tiny_pretrained.py` on crops of the photographs shipped in scikit-image's wheel
(the example dataset's concepts, a cat and a coffee cup, kept out). The weights ship inside the
package (fp16 safetensors, ≈6 MB) with `manifest.json`, which says how they were made; loading
checks every file against the manifest's sha256, so a damaged install is refused, not trained on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lrfind.errors import ModelError
from lrfind.models.components import SDComponents
from lrfind.models.tiny import build_tiny

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny_pretrained"
PARTS = ("unet", "vae", "text_encoder")
NAME = "tiny-pretrained"


def read_manifest(folder: Path = ASSET_DIR) -> dict:
    path = folder / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: the tiny-pretrained manifest is missing or unreadable ({err}); "
                         "reinstall lrfind") from None


def verify_files(folder: Path = ASSET_DIR) -> dict:
    """The manifest, after checking each weight file's sha256 against it (ModelError if not)."""
    manifest = read_manifest(folder)
    for part in PARTS:
        entry = manifest["files"][part]
        path = folder / entry["file"]
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            raise ModelError(f"{path}: cannot read the tiny-pretrained weights ({err.strerror}); reinstall lrfind") from None
        if digest != entry["sha256"]:
            raise ModelError(f"{path}: sha256 {digest[:12]}… does not match the manifest's "
                             f"{entry['sha256'][:12]}…; the file is damaged or replaced: reinstall lrfind")
    return manifest


def build_tiny_pretrained(folder: Path = ASSET_DIR) -> SDComponents:
    """The tiny architecture (float32) with the shipped trained weights; frozen, eval mode."""
    import torch
    from safetensors.torch import load_file

    verify_files(folder)
    components = build_tiny(0)  # the architecture; every weight is replaced below
    for part in PARTS:
        state = {k: v.to(torch.float32) for k, v in load_file(str(folder / f"{part}.safetensors")).items()}
        getattr(components, part).load_state_dict(state, strict=True)
    components.name = NAME
    return components
