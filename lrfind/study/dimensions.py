"""A search space's dimensions: fixed values, choices or ranges, as a space TOML writes them. Pure.

lrfind.study.space reads the TOML into a SearchSpace of these; each asks an Optuna trial for its value.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from lrfind.config import StrictModel
from lrfind.network.types import space_arg_types


def shorthand(value: Any) -> Any:
    """`16` -> {"choices": [16]}, `[8, 16]` -> {"choices": [8, 16]}; tables pass through."""
    if isinstance(value, list):
        return {"choices": value}
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return {"choices": [value]}
    return value


class _Dimension(StrictModel):
    """Exactly one of `choices` or `range`; subclasses fix the value type and bounds."""

    def _check_one_form(self) -> None:
        if (self.choices is None) == (self.range is None):
            raise ValueError("give exactly one of choices = [...] or range = [low, high]")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        if self.choices is not None and len(set(self.choices)) != len(self.choices):
            raise ValueError(f"choices {self.choices} repeat a value")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(f"range low {self.range[0]} is above high {self.range[1]}; write [low, high]")

    @property
    def values_seen(self) -> list:
        return list(self.choices) if self.choices is not None else list(self.range)

    @property
    def highest(self):
        return max(self.values_seen)


class IntDimension(_Dimension):
    choices: Optional[list[int]] = None
    range: Optional[tuple[int, int]] = None
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _valid(self) -> "IntDimension":
        self._check_one_form()
        if min(self.values_seen) < 1:
            raise ValueError(f"values must be at least 1, got {min(self.values_seen)}")
        if self.choices is not None and self.step != 1:
            raise ValueError("step goes with range = [low, high], not with choices")
        return self

    def suggest(self, trial, name: str) -> int:
        if self.choices is not None:
            return int(trial.suggest_categorical(name, self.choices))
        return int(trial.suggest_int(name, self.range[0], self.range[1], step=self.step))


class FloatDimension(_Dimension):
    """Ranges are sampled log-uniformly: these are scale factors (lr multiplier, alpha/dim)."""

    choices: Optional[list[float]] = None
    range: Optional[tuple[float, float]] = None

    @model_validator(mode="after")
    def _valid(self) -> "FloatDimension":
        self._check_one_form()
        if not all(math.isfinite(v) and v > 0 for v in self.values_seen):
            raise ValueError(f"values must be positive numbers, got {self.values_seen}")
        return self

    def suggest(self, trial, name: str) -> float:
        if self.choices is not None:
            return float(trial.suggest_categorical(name, self.choices))
        return float(trial.suggest_float(name, self.range[0], self.range[1], log=True))


class NameDimension(StrictModel):
    choices: list[str]

    def suggest(self, trial, name: str) -> str:
        return str(trial.suggest_categorical(name, self.choices))

    @field_validator("choices")
    @classmethod
    def _nonempty(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"choices {v} must be a non-empty list without repeats")
        return v


# The network types' own args a space may search (a type's `space_args`): each is a field of
# SearchSpace and of TrialParams below, since pydantic's fields are written out.
TYPE_ARG_DIMENSIONS = ("lokr_factor",)


def type_arg_in_range(dimension: str, v: Optional[IntDimension]) -> Optional[IntDimension]:
    """A type's own arg no lower than its minimum (the type's rule says why)."""
    arg = space_arg_types(dimension)[0].space_arg(dimension)
    if v is not None and min(v.values_seen) < arg.minimum:
        raise ValueError(f"{arg.rule}, got {min(v.values_seen)}")
    return v


def canonical_names(names: list[str], known: tuple[str, ...] | list[str], what: str) -> list[str]:
    by_lower = {k.lower(): k for k in known}
    unknown = [n for n in names if n.lower() not in by_lower]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; use some of {', '.join(known)}")
    return [by_lower[n.lower()] for n in names]
