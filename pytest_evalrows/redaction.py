"""Keeping secrets out of everything the plugin saves or prints. Pure: imports no pytest."""

from __future__ import annotations

from typing import Any


def redacted(args: Any) -> list[str]:
    """The command line as recorded: without the value of --eval-api-key."""
    result: list[str] = []
    hide_next = False
    for arg in map(str, args):
        if hide_next:
            result.append("***")
            hide_next = False
        elif arg == "--eval-api-key":
            result.append(arg)
            hide_next = True
        elif arg.startswith("--eval-api-key="):
            result.append("--eval-api-key=***")
        else:
            result.append(arg)
    return result
