"""Durations and sizes as people write them in YAML files and on the command line, and money as
people read it."""

from __future__ import annotations

import math
import re
from typing import Any

DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
"""Seconds per duration unit (no unit: seconds)."""

SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
              "t": 1000**4, "tb": 1000**4, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2,
              "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4}
"""Bytes per size unit, case-insensitive: decimal (``MB``) and binary (``MiB``, ``Mi``)."""

_NUMBER_AND_UNIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_duration(value: Any, *, positive: bool = False) -> float:
    """``250ms`` / ``90s`` / ``15m`` / ``1h`` / ``7d`` / ``2w`` or a number of seconds -> seconds.
    Never negative or infinite; with ``positive``, never zero either. A ValueError names the forms."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 30s, 15m, 1h, 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _NUMBER_AND_UNIT.fullmatch(str(value))
        unit = m.group(2).lower() if m else ""
        if m is None or (unit and unit not in DURATION_UNITS):
            raise ValueError(f"{value!r} is not a duration; write it like 30s, 15m, 1h or 7d")
        seconds = float(m.group(1)) * DURATION_UNITS[unit or "s"]
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        raise ValueError(f"a duration must be {'positive' if positive else 'zero or more'}, got {value!r}")
    return seconds


def parse_size(value: Any, *, what: str = "a size") -> int:
    """``2GiB`` / ``512Mi`` / ``1.5GB`` / ``200kb`` or a number of bytes -> bytes (never negative).
    ``what`` names the setting in the error (``memory``)."""
    forms = "write bytes or a size like '2GiB', '512MiB', '1.5GB'"
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of bytes or a size like '2GiB' or '512MB'")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{what} cannot be negative")
        return int(value)
    m = _NUMBER_AND_UNIT.fullmatch(str(value))
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; {forms}" if what == "a size" else f"{what} {value!r}: {forms}")
    return int(float(m.group(1)) * SIZE_UNITS[unit])


def format_usd(value: float) -> str:
    """Dollars for people: cents from $1 up (``$1,234.50``); below $1 at least four decimals and
    enough to show two significant digits (``$0.0123``, ``$0.000012``: a tiny budget stays legible)."""
    if not math.isfinite(value):
        return f"${value}"
    sign = "-" if value < 0 else ""
    v = abs(value)
    if v >= 1:
        return f"{sign}${v:,.2f}"
    decimals = 4 if v == 0 else min(12, max(4, 1 - math.floor(math.log10(v))))
    digits = f"{v:.{decimals}f}"
    # two significant digits, but no trailing zeros past the fourth decimal: $0.0001, not $0.00010
    while len(digits.split(".")[1]) > 4 and digits.endswith("0"):
        digits = digits[:-1]
    return f"{sign}${digits}"
