"""How ``evalrows serve`` reads a request body as JSON: strictly, and bounded in what it may
cost to parse (the number of values as much as the bytes); and the refusals of a body."""

from __future__ import annotations

import math
import re
from typing import Any

import pydantic_core

from ..errors import EvalrowsError

#: The most JSON values a body may hold (see ``load``): some ninety times what a full batch
#: of the HTTP store holds.
MAX_VALUES = 500_000


class BadRequest(EvalrowsError):
    """A request the server refuses with a 400 and the message."""


class TooLarge(EvalrowsError):
    """A body the server refuses with a 413 (the HTTP store splits the batch then)."""


def load(data: bytes) -> Any:
    """A body as JSON: strict (UTF-8, no NaN, no lone surrogate), nested at most 200 deep
    (the parser's limit), with every number finite, and at most ``MAX_VALUES`` values."""
    # Every value costs the parser 30 to 100 bytes of objects however short its text (`[],`
    # is 3 bytes), and the store as much again: their number bounds the memory as much as the
    # body's size does. Counted by the separators before them, first in fast passes over the
    # bytes, then, if strings (which hold separators too) may have made that count too high,
    # once more without the strings.
    if _values(data) > MAX_VALUES:
        values = _values(_STRING.sub(b'""', data))
        if values > MAX_VALUES:
            raise TooLarge(
                f"request body of {values} JSON values, over {MAX_VALUES}: split the batch"
            )
    try:
        value = pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        message = str(exc)
        hints = [hint for words, hint in _PARSER_HINTS if words in message]
        hint = f" ({hints[0]})" if hints else ""
        raise BadRequest(f"the body is not JSON this server reads: {message}{hint}") from None
    if not _all_finite(value):
        raise BadRequest(f"{_first_infinite(value)}: a number too large for a 64-bit float")
    return value


# A JSON string, escapes and all (written so that matching it never backtracks).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _values(data: bytes) -> int:
    """At most how many JSON values ``data`` holds: each one but the first follows one of
    these separators, or is an object (the separators count its keys too)."""
    return sum(data.count(separator) for separator in (b",", b":", b"[", b"{"))


# What the JSON parser's messages mean for what this server refuses on purpose.
_PARSER_HINTS = (
    ("escape", r"a \u escape takes 4 hex digits, and one of \ud800-\udfff half a surrogate pair"),
    ("recursion limit", "nested deeper than 200 levels"),
    ("number out of range", "an integer of more than 4300 digits"),
)


def _all_finite(value: Any) -> bool:
    # A literal such as 1e400 parses as infinity; the store would write it as `Infinity`,
    # which SQLite refuses as malformed JSON. One pass without paths: most bodies pass.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return False
    return True


def _first_infinite(value: Any) -> str:
    """Where the first infinite number is, as ``describe`` names a place."""
    stack = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}") for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, float) and not math.isfinite(item):
            return path.lstrip(".") or "body"
    return "body"
