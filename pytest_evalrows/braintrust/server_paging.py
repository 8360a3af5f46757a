"""How ``evalrows serve`` pages a fetch (its cursors) and names what it is not told a name
for; small helpers of ``server_bodies``, which re-exports them."""

from __future__ import annotations

import base64
import binascii
import time

from .server_json import BadRequest

# What SQLite's INTEGER holds: execution numbers, token counts and write order go there.
INT64_MAX = 2**63 - 1


#: A fetch pages through the events in write order (``before`` a place), then through the
#: attempts (``attempts`` from an offset): the store keeps attempts apart from events.
BEFORE = "before"
ATTEMPTS = "attempts"


def encode_cursor(xact: int, kind: str = BEFORE) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{xact}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, int]:
    """(``BEFORE``, place in write order) or (``ATTEMPTS``, offset)."""
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        # As encode_cursor wrote it: digits that fit SQLite's INTEGER.
        if kind in (BEFORE, ATTEMPTS) and value.isascii() and value.isdigit() and len(value) <= 19:
            number = int(value)
            if number <= INT64_MAX:
                return kind, number
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise BadRequest("cursor: not a cursor this server gave out")


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or when it is taken the first of ``name-1``, ``name-2``, ... that is not."""
    if name not in taken:
        return name
    number = 1
    while f"{name}-{number}" in taken:
        number += 1
    return f"{name}-{number}"


def default_name(branch: str | None) -> str:
    """An experiment's name when its creator gives none: its branch (or ``experiment``) and
    the time, as Braintrust names them."""
    return f"{branch or 'experiment'}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def query_int(name: str, text: str) -> int:
    """A whole number from a query string."""
    try:
        return int(text)
    except ValueError:
        shown = repr(text) if len(text) <= 30 else f"{text[:30]!r}... ({len(text)} characters)"
        raise BadRequest(f"{name}: not an integer: {shown}") from None
