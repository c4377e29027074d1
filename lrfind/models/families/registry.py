"""The model families lrfind supports, one module each, and detection across them.

Adding a family is one module defining a `FAMILY` (lrfind.models.families.family.ModelFamily) and
one line in `_BUILT_IN` (sd1.py, sdxl.py). Written out rather than discovered, as the optimizers'
registry: the order is the detection order and the order messages list the families in.
"""

from __future__ import annotations

from typing import Any, Mapping

from lrfind.errors import ModelError
from lrfind.models.families import sd1, sdxl, unsupported
from lrfind.models.families.family import ModelFamily, ModelVariant, Shapes

_BUILT_IN = (sd1.FAMILY, sdxl.FAMILY)

_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add `family`; a ModelError if its name or a variant's name is taken."""
    taken = {name for known in _FAMILIES.values() for name in (known.name, *(v.name for v in known.variants))}
    clashes = [name for name in (family.name, *(v.name for v in family.variants)) if name in taken]
    if clashes:
        raise ModelError(f"model family {family.name}: the name {clashes[0]!r} is taken")
    _FAMILIES[family.name] = family
    return family


for _family in _BUILT_IN:
    register_family(_family)


def model_families() -> list[ModelFamily]:
    return list(_FAMILIES.values())


def family_named(name: str) -> ModelFamily:
    if name not in _FAMILIES:
        raise ModelError(f"unknown model family {name!r}; lrfind knows {', '.join(_FAMILIES)}")
    return _FAMILIES[name]


def variant_named(name: str) -> tuple[ModelFamily, ModelVariant]:
    for family in _FAMILIES.values():
        for variant in family.variants:
            if variant.name == name:
                return family, variant
    raise ModelError(f"unknown model variant {name!r}")


def detect_single_file(shapes: Shapes, source: str = "checkpoint") -> tuple[ModelFamily, ModelVariant]:
    """The family and variant of an original-layout checkpoint; ModelError naming anything else."""
    refusal = unsupported.single_file_refusal(shapes)
    if refusal:
        raise ModelError(f"{source}: this is {refusal}")
    family = next((f for f in _FAMILIES.values() if f.claims_single_file(shapes)), None)
    if family is None:
        first = next(iter(_FAMILIES.values()))
        versions = " or ".join(f.label.removeprefix("SD ") for f in _FAMILIES.values())
        raise ModelError(
            f"{source}: not a Stable Diffusion {versions} checkpoint (no {first.parts['unet']}* U-Net "
            f"weights); pass a full {first.label} model such as {first.example_file}"
        )
    return family, family.single_file_variant(shapes, source)


def detect_folder(index: Mapping[str, Any], source: str) -> ModelFamily:
    """The family of a diffusers folder from its model_index.json; ModelError for one lrfind refuses."""
    refusal = unsupported.folder_refusal(index)
    if refusal:
        raise ModelError(f"{source}: {refusal}")
    family = next((f for f in _FAMILIES.values() if f.claims_folder(index)), None)
    if family is None:
        raise ModelError(f"{source}: a {index.get('_class_name', 'diffusers')} folder of no family lrfind knows; "
                         f"pass an {' or '.join(f.label for f in _FAMILIES.values())} model")
    return family
