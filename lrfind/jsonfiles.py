"""Reading the JSON files lrfind writes (recommendation.json, probe.json): one clear error each;
and `finite`, a number as JSON can hold it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from lrfind.errors import ConfigError


def read_json_object(path: Path, missing_fix: str) -> dict:
    """The JSON object in `path`, or a ConfigError naming the file and the fix."""
    if not path.is_file():
        raise ConfigError(f"{path}: not found; {missing_fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); rerun `lrfind study` to rewrite it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object; rerun `lrfind study` to rewrite it")
    return data


def probe_source(study_dir: Path) -> dict:
    """probe.json's "source" ({dataset, model} or {tensorboard, tag}); {} without a probe.json."""
    path = Path(study_dir) / "probe.json"
    if not path.is_file():
        return {}
    source = read_json_object(path, "").get("source")
    return source if isinstance(source, dict) else {}


def finite(value: Any) -> Optional[float]:
    """The value if it is a finite number, else None (JSON and plotly take None): lrfind's one test
    of "a usable number". Floats (numpy's too) come back as float, ints as int (steps stay steps
    in JSON), bools and anything else as None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value
    return float(value) if math.isfinite(value) else None
