"""What the judging commands share: their usage error, what they take from ``cli``, and how
they read numbers and print money."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from ..errors import EvalrowsError

Command = Callable[[argparse.Namespace, TextIO], int]
Columns = list[tuple[str, str]]


class UsageError(EvalrowsError):
    """A command line that asks for something invalid (exit 2, like argparse's own)."""


@dataclass(frozen=True)
class Shared:
    """What these commands share with the other ``evalrows`` commands."""

    add: Callable[[str, str, Command], argparse.ArgumentParser]  # a command with --store, --json
    add_project: Callable[[argparse.ArgumentParser], None]
    open_store: Callable[[argparse.Namespace], Any]
    emit: Callable[[TextIO, list[dict[str, Any]], bool, Columns], None]
    unescaped: Callable[[str], str]  # a row id as the test wrote it, before pytest escaped it


def whole_number(option: str, text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(f"{option} {text!r}: expected a whole number of 1 or more")
    return number


def seconds(option: str, text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"{option} {text!r}: expected a number of seconds above 0")
    return number


def money(amount: float) -> str:
    return f"${amount:.6f}"


def one_line(text: str) -> str:
    return " ".join(text.split())


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
