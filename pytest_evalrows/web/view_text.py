"""Display text of stored values, for the pages (``pages``: templates never format data).

Pure: imports no web framework.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.records import ErrorInfo

#: Characters of input, output and expected a row of the rows table shows (search sees all).
CLIP = 200
_CLIPPED = "…"
# One line, made once: a page of 10,000 rows encodes 30,000 values.
_ONE_LINE = json.JSONEncoder(ensure_ascii=False, default=str)


def pretty(value: Any) -> str:
    """The display text of a JSON-like value: text as it is, None as nothing, anything else
    as indented JSON (keys in stored order)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def inline(value: Any) -> str:
    """A value on one line (compact JSON for containers), clipped to ``CLIP`` characters:
    what a cell of the rows table shows."""
    return clip(one_line(value))


def one_line(value: Any) -> str:
    """A value on one line (compact JSON for containers), whole."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _ONE_LINE.encode(value)


def search_text(*values: Any) -> str:
    """What text search looks in: the values whole, each on one line as a cell shows it (not
    clipped), casefolded, one per line."""
    return "\n".join(one_line(value) for value in values).casefold()


def clip(text: str, limit: int = CLIP) -> str:
    """``text`` cut to ``limit`` characters, ending in an ellipsis when it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + _CLIPPED


def same_value(a: Any, b: Any) -> bool:
    """Whether two stored values are the same JSON (``1`` and ``True`` are not)."""
    return canonical(a) == canonical(b)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def error_line(error: ErrorInfo | None) -> str | None:
    """An error as ``Type: message``, its first line only."""
    if error is None:
        return None
    text = f"{error.type}: {error.message}" if error.message else error.type
    return text.splitlines()[0] if text else text


def error_text(error: ErrorInfo | None) -> str | None:
    """An error as ``Type: message``, whole."""
    if error is None:
        return None
    return f"{error.type}: {error.message}" if error.message else error.type
