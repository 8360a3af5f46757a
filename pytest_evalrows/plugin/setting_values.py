"""The parsers of setting values: each takes the text as given and returns the value, or
raises ``ValueError`` saying what is valid (``settings.resolve`` names where it came from)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from ..core import ids

# No control characters, and no surrogates: a name given in bytes that are not UTF-8 (on a
# command line, say) reaches Python as surrogates, which no store can keep.
_NAME = re.compile(r"^[^\x00-\x1f\x7f\ud800-\udfff]{1,200}$")


def name(what: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if _NAME.fullmatch(value) is None or not value.strip():
            raise ValueError(
                f"{what} must be 1 to 200 characters of UTF-8 text with no control characters "
                "and not only spaces"
            )
        return value

    return parse


def attempt_id(value: str) -> str:
    if not ids.is_valid_attempt_id(value):
        raise ValueError(
            "an attempt id must be 1 to 128 characters: letters, digits and . _ : - "
            "(starting with a letter or digit)"
        )
    return value


def count(value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ValueError(f"valid values: a whole number, {minimum} or more")
    return number


def seconds(value: str, *, zero: bool = False) -> float:
    """A number of seconds above 0 (or 0 and above, with ``zero``)."""
    valid = "0 or more" if zero else "above 0"
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"not a number of seconds; valid values: a number {valid}") from None
    if not (seconds >= 0 if zero else seconds > 0) or seconds == float("inf"):
        raise ValueError(f"valid values: a number of seconds {valid}")
    return seconds


def directory(value: str, anchor: Path) -> Path:
    if not value.strip():
        raise ValueError("a directory path cannot be empty")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else anchor / path
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    return path


def choice(valid: tuple[str, ...]) -> Callable[[str], str]:
    """A parser for a setting with a fixed set of values."""

    def parse(value: str) -> str:
        normalized = value.strip().lower()
        if normalized not in valid:
            raise ValueError(f"not a valid value; valid values: {', '.join(valid)}")
        return normalized

    return parse


def boolean(value: str) -> bool:
    normalized = value.strip().lower()
    if normalized in ("1", "true", "yes", "on"):
        return True
    if normalized in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a valid value; valid values: true, false (or 1, 0, yes, no, on, off)")


def _pairs(value: str) -> Iterator[tuple[str, str, str]]:
    """Each ``NAME=VALUE`` entry of a value (repeated flags, commas or new lines): the entry as
    given, its name (stripped) and what follows ``=`` (empty when there is no ``=``, so that
    a missing one reads as a bad value)."""
    for part in re.split(r"[,\n]", value):
        part = part.strip()
        if part:
            name, sep, given = part.partition("=")
            yield part, name.strip(), given if sep else ""


def score_bounds(value: str) -> tuple[tuple[str, float], ...]:
    """``NAME=VALUE`` pairs (repeated, or separated by commas or new lines): a score's name
    and the mean it must reach, in [0, 1]. ``pass`` is the pass rate."""
    found: dict[str, float] = {}
    for part, name, bound in _pairs(value):
        try:
            number = float(bound)
        except ValueError:
            number = math.nan
        if not name or not 0.0 <= number <= 1.0:
            raise ValueError(
                f"{part!r} is not NAME=VALUE with VALUE a number from 0 to 1 "
                "(e.g. pass=0.9, exact=0.75)"
            )
        found[name] = number
    if not found:
        raise ValueError("give at least one NAME=VALUE (e.g. pass=0.9)")
    return tuple(sorted(found.items()))


def group_limits(value: str) -> tuple[tuple[str, int], ...]:
    """``NAME=N`` pairs (repeated, or separated by commas or new lines): a concurrency group's
    name and the most of its cases that may run at once, sorted by name."""
    found: dict[str, int] = {}
    for part, name, limit in _pairs(value):
        try:
            number = int(limit)
        except ValueError:
            number = 0
        if not name or number < 1:
            raise ValueError(
                f"{part!r} is not NAME=N with N a whole number of at least 1 (e.g. openai=8)"
            )
        # Two limits for one group would leave which one holds to the order they were read in.
        if name in found:
            raise ValueError(f"group {name!r} is given a limit twice; give each group one NAME=N")
        found[name] = number
    if not found:
        raise ValueError("give at least one NAME=N (e.g. openai=8)")
    return tuple(sorted(found.items()))
