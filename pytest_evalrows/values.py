"""Values a test logs: JSON-safe copies and checked scores.

Light on purpose: the plugin imports this even when recording is off.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

from .errors import InvalidScoreError

# A logged field larger than this (as JSON text) is cut down and the row says so.
MAX_FIELD_BYTES = 1_000_000


def json_value(value: Any) -> tuple[Any, int | None]:
    """A faithful JSON-safe copy of ``value``, and the original size when it had to be cut.

    pydantic serializes dataclasses, models, dates, sets, bytes and the like; anything it cannot
    serialize becomes its ``repr``; a value over ``MAX_FIELD_BYTES`` becomes a string holding the
    start of its JSON text. Never raises.
    """
    if value is None or isinstance(value, (bool, int)):
        return value, None
    if isinstance(value, str) and len(value) < MAX_FIELD_BYTES // 4:
        return value, None
    import pydantic_core  # only paid for when recording

    try:
        text = pydantic_core.to_json(value, fallback=_safe_repr, inf_nan_mode="strings")
    except Exception:  # cycles and serializers that raise: fall back to the repr
        text = pydantic_core.to_json(_safe_repr(value))
    if len(text) > MAX_FIELD_BYTES:
        cut = text[:MAX_FIELD_BYTES].decode("utf-8", errors="ignore")
        return cut, len(text)
    return json.loads(text), None


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not break the row
        return f"<{type(value).__name__} object; repr failed: {type(exc).__name__}>"


def check_score(name: object, value: object) -> float:
    """A score as stored: a finite number in [0, 1] under a non-empty string name."""
    __tracebackhide__ = True
    if not isinstance(name, str) or not name:
        raise InvalidScoreError(f"a score name must be a non-empty string, got {name!r}")
    # bool is allowed on purpose: score("exact", answer == expected) is the common case.
    if not isinstance(value, numbers.Real):
        raise InvalidScoreError(
            f"score {name!r} must be a number in [0, 1], got {type(value).__name__} {value!r}"
        )
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidScoreError(f"score {name!r} must be a finite number in [0, 1], got {value!r}")
    return number
