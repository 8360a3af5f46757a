"""Times to and from ISO 8601 text, one rule for every caller: epoch seconds are UTC, text or a
datetime without an offset is UTC, and whatever is not a time reads as None.

Pure: imports nothing else of the package.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Literal, overload

Precision = Literal["seconds", "milliseconds", "microseconds"]


@overload
def to_iso(timestamp: float, precision: Precision) -> str: ...
@overload
def to_iso(timestamp: None, precision: Precision) -> None: ...
@overload
def to_iso(timestamp: float | None, precision: Precision) -> str | None: ...
def to_iso(timestamp: float | None, precision: Precision) -> str | None:
    """Epoch seconds as UTC ISO text ending in ``Z``, to ``precision``; None stays None.

    Raises ValueError for a number that is no representable time (NaN, infinite, out of range).
    """
    if timestamp is None:
        return None
    try:
        moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"not a representable time: {timestamp!r}") from None
    # A UTC datetime always ends in +00:00; `Z` is the form Braintrust and the CLI print.
    return moment.isoformat(timespec=precision).removesuffix("+00:00") + "Z"


def to_epoch(value: object) -> float | None:
    """Epoch seconds from a number, a datetime or ISO text (``Z`` or an offset); else None.

    Booleans, NaN, infinities, garbage text and other types are not times.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int beyond a float's range
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        # Python 3.10's fromisoformat does not read a trailing `Z`.
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        # Naive means UTC here, never this machine's local zone.
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
