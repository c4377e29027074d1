"""A command's flat option names <-> its config's nested fields (the edge's spelling).

`lrfind probe` and `lrfind study` keep their flat flags (--resolution, --network-dim, --model)
while their configs nest the shared parts (dataset.resolution, network.dim, model.model): each
command keeps one table, flat name -> field path, in the order its --help lists them.
lrfind.training.kohya_names is the same idea for `lrfind train`'s kohya names.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Mapping

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lrfind.config import nest_flat

FlatTable = Mapping[str, tuple[str, ...]]


def _part_model(annotation: Any) -> type[BaseModel]:
    """The model class of a part's annotation (Optional[DatasetConfig] -> DatasetConfig)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def flat_fields(model: type[BaseModel], table: FlatTable) -> dict[str, FieldInfo]:
    """Each flat name's pydantic field (type, bounds), with the default the command gives it (a
    part's default object: e.g. the probe's network dim 8, alpha 8), in the table's order."""
    fields = {}
    for flat, path in table.items():
        owner, default_part = model, None
        for part in path[:-1]:
            field = owner.model_fields[part]
            default_part = None if field.is_required() else field.get_default(call_default_factory=True)
            owner = _part_model(field.annotation)
        field = owner.model_fields[path[-1]]
        if default_part is not None and not field.is_required():
            value = getattr(default_part, path[-1])
            if value != field.get_default(call_default_factory=True):
                field = FieldInfo.merge_field_infos(field, default=value)
        fields[flat] = field
    return fields


def nest(flat: Mapping[str, Any], table: FlatTable) -> dict[str, Any]:
    """Flat values (keys of the table) -> the config's nested values; a key not in the table stays
    at the top, for the config to refuse by name (a TOML's typo)."""
    return nest_flat(flat, table)


def flat_names(table: FlatTable) -> dict[tuple[str, ...], str]:
    """Field path -> flat name: a validation error names the option as the user spelled it."""
    return {path: flat for flat, path in table.items()}
