"""Errors of events another Braintrust client writes, as the store keeps errors: the SDK
sends a traceback as a string. Pure: no pytest, no HTTP."""

from __future__ import annotations

import re
from typing import Any

# The last line of a Python traceback: `module.Type: message` (or the type alone).
_EXCEPTION_LINE = re.compile(r"(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?")


def error_info(error: Any) -> dict[str, str] | None:
    """An event's ``error`` as the store's error: an object's ``type``, ``message`` and
    ``traceback``; a string is a traceback when it is one (its last line names the type),
    else the message of an ``Error``."""
    if error is None:
        return None
    if isinstance(error, dict):
        return {
            "type": str(error.get("type", "")),
            "message": str(error.get("message", "")),
            "traceback": str(error.get("traceback", "")),
        }
    text = error if isinstance(error, str) else str(error)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        last = _EXCEPTION_LINE.fullmatch(lines[-1].strip())
        if last is not None:
            return {"type": last["type"], "message": last["message"] or "", "traceback": text}
    return {"type": "Error", "message": text, "traceback": ""}


def error_text(error: Any) -> str:
    """The error as a span's status description: ``Type: message``."""
    info = error_info(error) or {}
    return f"{info.get('type')}: {info.get('message')}".rstrip(": ")
