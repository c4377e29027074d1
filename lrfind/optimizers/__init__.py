"""Everything lrfind knows about each optimizer, one module per optimizer, and their registry.

Pure (no torch, not even lazily): the study's search space, the probe's derivation, the disk-space
estimate and the CLI read it. lrfind.training.optimizers builds the optimizers from these entries.
How to add one: docs/extending.md.
"""

from lrfind.optimizers.entry import LrInputs, OptimizerEntry, OptimizerValues, lr_summary, scaled_lr_rule
from lrfind.optimizers.registry import (canonical_optimizer_name, is_adaptive, optimizer_entries,
                                        optimizer_entry, optimizer_names, probe_optimizer_spellings,
                                        register_optimizer, study_optimizer_names)

__all__ = [
    "LrInputs", "OptimizerEntry", "OptimizerValues", "canonical_optimizer_name", "is_adaptive", "lr_summary",
    "optimizer_entries", "optimizer_entry", "optimizer_names", "probe_optimizer_spellings",
    "register_optimizer", "scaled_lr_rule", "study_optimizer_names",
]
