"""Values a test logs: JSON-safe copies and checked scores.

Light on purpose: the plugin imports this even when recording is off.

Text that UTF-8 cannot encode (lone surrogates: bytes a program decoded with
``surrogateescape``, as ``os`` does for file names and ``subprocess`` output may) is stored
escaped, the same way everywhere a row or span takes text from a test (``storable_text``):

- a ``surrogateescape``'d byte (U+DC80 to U+DCFF) becomes ``\\x`` and two hex digits, so
  ``b"caf\\xe9".decode("utf-8", "surrogateescape")`` is stored as the text ``caf\\xe9``, and so
  are the bytes ``b"caf\\xe9"`` themselves;
- any other lone surrogate becomes ``\\u`` and four hex digits (``\\ud800``);
- a high surrogate followed by a low one is the character they encode together.

The escapes are plain text: a stored ``\\xe9`` cannot be told from one the test logged as such.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from typing import Any

from .errors import InvalidScoreError

# A logged field larger than this (as JSON text) is cut down and the row says so.
MAX_FIELD_BYTES = 1_000_000
# Shorter text cannot reach the limit: a character is at most six bytes of JSON ("\u0000").
_SHORT_TEXT = MAX_FIELD_BYTES // 6

_SURROGATES = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` as UTF-8 can store it: lone surrogates escaped (see the module's docstring)."""
    # Runs per logged string: ASCII and valid text return at C speed.
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub(_escape_surrogate, text)
    return text


def _escape_surrogate(match: re.Match[str]) -> str:
    found = match.group()
    if len(found) == 2:
        return found.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    code = ord(found)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def json_value(value: Any) -> tuple[Any, int | None]:
    """A faithful JSON-safe copy of ``value``, and the original size when it had to be cut.

    pydantic serializes dataclasses, models, dates, sets, bytes and the like; anything it cannot
    serialize becomes its ``repr``; text UTF-8 cannot encode is escaped (``storable_text``); a
    value over ``MAX_FIELD_BYTES`` becomes a string holding the start of its JSON text. Never
    raises.
    """
    if value is None or isinstance(value, (bool, int)):
        return value, None
    if isinstance(value, str) and len(value) < _SHORT_TEXT:
        safe = storable_text(value)
        if safe is value:
            return value, None
        value = safe  # escapes are longer than what they replace: measured below
    import pydantic_core  # only paid for when recording

    try:
        text = pydantic_core.to_json(value, fallback=_safe_repr, inf_nan_mode="strings")
    except Exception:  # text UTF-8 cannot encode, a cycle, a serializer that raises
        text = _escaped_json(value)
    if len(text) > MAX_FIELD_BYTES:
        cut = text[:MAX_FIELD_BYTES].decode("utf-8", errors="ignore")
        return cut, len(text)
    return json.loads(text), None


def _escaped_json(value: Any) -> bytes:
    """The slow path, only for values the fast one refused: escape text through the plain
    containers; anything else pydantic turns into plain values first. A cycle, or an object
    that cannot be serialized at all, makes the whole value its repr."""
    import pydantic_core

    try:
        plain = _storable(value, set())
        return pydantic_core.to_json(plain, fallback=_safe_repr, inf_nan_mode="strings")
    except Exception:
        return pydantic_core.to_json(storable_text(_safe_repr(value)))


def _storable(value: Any, path: set[int]) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, (bytes, bytearray)):
        # What pydantic does with UTF-8 bytes; other bytes escaped as their text would be.
        return storable_text(bytes(value).decode("utf-8", "surrogateescape"))
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if id(value) in path:
        raise ValueError("a cycle")
    path.add(id(value))
    try:
        if isinstance(value, dict):
            return {
                (_storable(key, path) if isinstance(key, (str, bytes)) else key): _storable(
                    item, path
                )
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple, set, frozenset)):
            return [_storable(item, path) for item in value]
        import pydantic_core

        try:
            plain = pydantic_core.to_jsonable_python(
                value, fallback=_safe_repr, inf_nan_mode="strings"
            )
        except Exception:  # a dict key or bytes inside it UTF-8 cannot take: its repr
            return storable_text(_safe_repr(value))
        return _storable(plain, path)
    finally:
        path.discard(id(value))


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
