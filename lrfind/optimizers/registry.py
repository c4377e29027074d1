"""The optimizers lrfind knows, by kohya's names: one module each, listed here in order.

Adding an optimizer is one module defining an `ENTRY` (lrfind.optimizers.entry.OptimizerEntry) and
one line in `_BUILT_IN` below. The list is written out rather than discovered (pkgutil) because its
order is what users see (--help, error messages, optimizer_names()), a stray file in the folder
must not become an optimizer, and the import graph stays plain to read and to check.
"""

from __future__ import annotations

from lrfind.errors import ConfigError
from lrfind.optimizers import adamw, adamw8bit, dadapt_adam, dadapt_lion, lion, prodigy
from lrfind.optimizers.entry import OptimizerEntry

_BUILT_IN = (
    adamw.ENTRY,
    adamw8bit.ENTRY,
    lion.ENTRY,
    dadapt_adam.ENTRY,
    dadapt_lion.ENTRY,
    prodigy.ENTRY,
)

_ENTRIES: dict[str, OptimizerEntry] = {}  # canonical name, lower-case -> entry, in registration order


def register_optimizer(entry: OptimizerEntry) -> OptimizerEntry:
    """Add `entry`; a ConfigError if one of its spellings already names another optimizer."""
    taken = {spelling: known.name for known in _ENTRIES.values() for spelling in known.spellings}
    clashes = [spelling for spelling in entry.spellings if spelling in taken]
    if clashes:
        raise ConfigError(f"optimizer {entry.name}: the name {clashes[0]!r} is taken by {taken[clashes[0]]}")
    _ENTRIES[entry.name.lower()] = entry
    return entry


for _entry in _BUILT_IN:
    register_optimizer(_entry)


def optimizer_entries() -> list[OptimizerEntry]:
    """Every registered optimizer, in registration order."""
    return list(_ENTRIES.values())


def optimizer_names() -> list[str]:
    """Canonical names, in registration order (aliases not included)."""
    return [entry.name for entry in _ENTRIES.values()]


def optimizer_entry(name: str) -> OptimizerEntry:
    """The entry of `name` (any accepted spelling, any case); ConfigError naming the known ones."""
    key = name.strip().lower()
    for entry in _ENTRIES.values():
        if key in entry.spellings:
            return entry
    aliases = "; ".join(f"{a} is an alias of {e.name}" for e in _ENTRIES.values() for a in e.aliases)
    raise ConfigError(f"unknown optimizer {name!r}; use one of {', '.join(optimizer_names())}"
                      + (f" ({aliases})" if aliases else ""))


def canonical_optimizer_name(name: str) -> str:
    """'adamw' -> 'AdamW', 'DAdaptation' -> 'DAdaptAdam'; ConfigError for unknown names."""
    return optimizer_entry(name).name


def is_adaptive(name: str) -> bool:
    """True for D-Adaptation and Prodigy, which estimate d and use lr as a multiplier."""
    return optimizer_entry(name).adaptive


def study_optimizer_names() -> list[str]:
    """The optimizers a study trial can use: those with an lr rule."""
    return [entry.name for entry in _ENTRIES.values() if entry.lr_rule is not None]


def probe_optimizer_spellings() -> list[str]:
    """Lower-case spellings of the optimizers a probe plateau converts from (with a plateau factor)."""
    return [s for entry in _ENTRIES.values() if entry.plateau_factor is not None for s in entry.spellings]
