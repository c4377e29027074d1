"""`finite`, a number as JSON can hold it. (Reading lrfind's JSON files: lrfind.artifacts.)"""

from __future__ import annotations

import math
from typing import Any, Optional


def finite(value: Any) -> Optional[float]:
    """The value if it is a finite number, else None (JSON and plotly take None): lrfind's one test
    of "a usable number". Floats (numpy's too) come back as float, ints as int (steps stay steps
    in JSON), bools and anything else as None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value
    return float(value) if math.isfinite(value) else None
