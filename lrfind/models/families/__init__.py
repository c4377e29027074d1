"""Model families, one module each: everything lrfind knows about SD 1.x (sd1.py) and SDXL
(sdxl.py), and their registry. A new family is one more module (docs/extending.md). No torch.
"""

from lrfind.models.families.family import ModelFamily, ModelVariant
from lrfind.models.families.registry import (detect_folder, detect_single_file, family_named, model_families,
                                             register_family, variant_named)

__all__ = ["ModelFamily", "ModelVariant", "detect_folder", "detect_single_file", "family_named",
           "model_families", "register_family", "variant_named"]
