"""Model families, one module each: everything lrfind knows about SD 1.x (sd1.py), and their registry.

SDXL comes as one more module: add lrfind/models/families/sdxl.py (docs/extending.md). No torch.
"""

from lrfind.models.families.family import ModelFamily, ModelVariant
from lrfind.models.families.registry import (detect_folder, detect_single_file, family_named, model_families,
                                             register_family, variant_named)

__all__ = ["ModelFamily", "ModelVariant", "detect_folder", "detect_single_file", "family_named",
           "model_families", "register_family", "variant_named"]
