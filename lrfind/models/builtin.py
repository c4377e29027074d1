"""The built-in models, by name: `tiny` (random init), `tiny-pretrained` (trained weights shipped),
both the tiny SD 1.x architecture of `tiny.py`, and `tiny-sdxl` (random init, the SDXL architecture
of `tiny_sdxl.py`). Nothing is downloaded. A name here is what `--model` accepts besides a path.
"""

from __future__ import annotations

from typing import Callable

from lrfind.models.components import SDComponents


def _tiny(seed: int) -> SDComponents:
    from lrfind.models.tiny import build_tiny  # lazy: lrfind --help loads this module, not the builders

    return build_tiny(seed)


def _tiny_pretrained(seed: int) -> SDComponents:
    # Trained weights: the seed does not apply (the manifest records the one they were trained with).
    from lrfind.models.tiny_pretrained import build_tiny_pretrained  # lazy: as build_tiny above

    return build_tiny_pretrained()


def _tiny_sdxl(seed: int) -> SDComponents:
    from lrfind.models.tiny_sdxl import build_tiny_sdxl  # lazy: as build_tiny above

    return build_tiny_sdxl(seed)


BUILTIN_MODELS: dict[str, Callable[[int], SDComponents]] = {
    "tiny": _tiny,
    "tiny-pretrained": _tiny_pretrained,
    "tiny-sdxl": _tiny_sdxl,
}
# Each built-in's lrfind.models.families name, known before it is built.
BUILTIN_FAMILIES = {"tiny": "sd1", "tiny-pretrained": "sd1", "tiny-sdxl": "sdxl"}
# Built-ins with random weights: their samples are noise and CLIP scores on them mean nothing.
RANDOM_BUILTINS = frozenset({"tiny", "tiny-sdxl"})


def is_builtin(model: str) -> bool:
    return model in BUILTIN_MODELS


def build_builtin(model: str, seed: int = 0) -> SDComponents:
    return BUILTIN_MODELS[model](seed)
