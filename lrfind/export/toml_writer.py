"""A small TOML writer for the exported kohya configs. Pure: no I/O.

Hand-written rather than tomli_w (not installed, and it cannot write comments): the exported files
explain where each value came from, and users read them before they train. It writes only what
the exports need: strings, booleans, finite numbers, lists of those, tables and arrays of tables.
Every file it writes is parsed back with the standard library's tomllib in the tests.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Commented:
    """A value written with a trailing `# comment`."""

    value: Any
    comment: str


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, Commented) else value


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """One inline TOML value. JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot go into a kohya config (kohya reads finite numbers only)")
        return repr(value)
    if isinstance(value, (str, PurePath)):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, dict) for v in value)


def _write_table(lines: list[str], path: tuple[str, ...], table: dict) -> None:
    # Plain keys first: after a [sub.table] header every key would belong to the sub-table.
    for key, item in table.items():
        value = _unwrap(item)
        if value is None or isinstance(value, dict) or _is_table_array(value):
            continue  # TOML has no null: a missing key means kohya's default
        comment = f"  # {item.comment}" if isinstance(item, Commented) and item.comment else ""
        lines.append(f"{_key(key)} = {toml_value(value)}{comment}")
    for key, value in table.items():
        dotted = ".".join(_key(k) for k in (*path, key))
        if isinstance(value, dict):
            lines += ["", f"[{dotted}]"]
            _write_table(lines, (*path, key), value)
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{dotted}]]"]
                _write_table(lines, (*path, key), item)


def dumps(document: dict, header: str = "") -> str:
    """The document as TOML text; `header` becomes `#` comment lines at the top."""
    lines = [f"# {line}".rstrip() for line in header.strip("\n").splitlines()]
    if lines:
        lines.append("")
    _write_table(lines, (), document)
    tidy = [line for i, line in enumerate(lines) if line or (i > 0 and lines[i - 1])]  # no double blanks
    while tidy and not tidy[0]:
        tidy.pop(0)
    return "\n".join(tidy) + "\n"
