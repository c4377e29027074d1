"""What every artifact shares: frozen, no unknown keys, a schema version, JSON in and out, and a
reader whose every failure is one line naming the file, the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from lrfind.errors import ConfigError

SCHEMA_VERSION = 1

A = TypeVar("A", bound="Artifact")


class Part(BaseModel):
    """A nested part of an artifact: frozen, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Artifact(Part):
    # A file written before artifacts had versions has no schema_version: it is version 1.
    schema_version: int = SCHEMA_VERSION
    # The newest version this lrfind reads (and writes); an artifact with a version of its own sets it
    VERSION: ClassVar[int] = SCHEMA_VERSION
    FIX: ClassVar[str] = "rewrite it with this lrfind version"  # what to do about a bad file
    FLAT_PARTS: ClassVar[tuple[str, ...]] = ()  # nested in the model, flat in the file (errors name the file's key)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if not 1 <= value <= cls.VERSION:
            raise ValueError(f"schema version {value} is not one this lrfind reads (1..{cls.VERSION}); "
                             "a newer lrfind wrote it")
        return value

    def to_dict(self) -> dict:
        """The JSON-ready dict (the file's keys), NaN kept as in earlier files."""
        return self.model_dump(mode="python")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    @classmethod
    def from_dict(cls: type[A], data: Any, source: str = "") -> A:
        """Validated; a bad value is a ConfigError naming `source` (a file, a study attribute) and the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(f"{source or cls.__name__}: {_first_error(err, cls.FLAT_PARTS)}; {cls.FIX}") from None

    @classmethod
    def from_json(cls: type[A], text_or_path: Union[str, Path]) -> A:
        """From JSON text, or from the file at a Path (a str that does not start with '{' is a path)."""
        if isinstance(text_or_path, Path) or not str(text_or_path).lstrip().startswith("{"):
            return read_artifact(cls, Path(text_or_path))
        return cls.from_dict(_parse(str(text_or_path), cls.__name__, cls.FIX), cls.__name__)


def _first_error(err: ValidationError, flat_parts: tuple[str, ...] = ()) -> str:
    first = err.errors()[0]
    parts = list(first.get("loc", ()))
    if parts and parts[0] in flat_parts:
        parts = parts[1:]
    loc = ".".join(str(part) for part in parts)
    message = first.get("msg", "invalid")
    if first.get("type") == "extra_forbidden":
        message = "not a field of this file"
    return f"field {loc}: {message}" if loc else message


def _parse(text: str, source: str, fix: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source}: not valid JSON ({err}); {fix}") from None


def read_artifact(cls: type[A], path: Path, missing_fix: str = "") -> A:
    """The artifact in `path`: a missing, unreadable or invalid file is one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found; {missing_fix or cls.FIX}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err}); {cls.FIX}") from None
    data = _parse(text, str(path), cls.FIX)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object; {cls.FIX}")
    return cls.from_dict(data, str(path))
