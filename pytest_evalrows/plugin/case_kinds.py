"""Which eval cases the plugin runs itself, and which of them may run at once."""

from __future__ import annotations

import inspect
import unittest
from dataclasses import dataclass
from typing import Any

import pytest

__all__ = ["SERIAL_FIXTURES", "CaseKind", "batch_key", "case_kind", "concurrency_blocker"]

# Fixtures over process-wide state (the streams, the root logger, the warnings filters,
# attributes anywhere): a case that uses one runs alone, in its place.
SERIAL_FIXTURES = frozenset(
    {
        "capsys",
        "capsysbinary",
        "capfd",
        "capfdbinary",
        "caplog",
        "monkeypatch",
        "recwarn",
        # Reports of its own, logged from the body: pytest logs reports from its main thread.
        "subtests",
    }
)
# Markers whose plugins run async tests their own way.
_OTHER_RUNNERS = ("asyncio", "anyio", "trio")


@dataclass(frozen=True, slots=True)
class CaseKind:
    """How an eval case runs: its body on the plugin's event loop (``is_async``) or a thread,
    whether it may overlap other cases, and the group whose limit it counts against."""

    is_async: bool
    concurrent: bool
    group: str | None


def case_kind(item: pytest.Item) -> CaseKind | None:
    """The kind of an eval case the plugin runs itself: an ``async def`` eval test (on its
    event loop, alone or with others) or a sync one marked ``concurrent=True``. None for every
    other test, which pytest runs as always."""
    if not isinstance(item, pytest.Function):
        return None
    marks = list(item.iter_markers("eval"))
    if not marks:
        return None
    function = getattr(item, "obj", None)
    is_async = inspect.iscoroutinefunction(function)
    concurrent = _marker_value(item, marks, "concurrent", bool, "True or False")
    group = _marker_value(item, marks, "concurrency_group", str, "a group name")
    if group is not None and not group.strip():
        raise pytest.UsageError(
            f"evalrows: @pytest.mark.eval(concurrency_group=...) of {item.nodeid} is empty; "
            "name the group, as in concurrency_group='openai'"
        )
    if not is_async and not concurrent:
        return None
    cls = getattr(item, "cls", None)
    if isinstance(cls, type) and issubclass(cls, unittest.TestCase):
        return None  # unittest runs its own methods
    if any(item.get_closest_marker(name) for name in _OTHER_RUNNERS):
        return None  # pytest-asyncio's or anyio's: left to them
    if "anyio_backend" in getattr(item, "fixturenames", ()):
        return None
    # An async case may overlap others unless its marker says concurrent=False.
    may_overlap = is_async if concurrent is None else concurrent
    return CaseKind(
        is_async=is_async, concurrent=may_overlap and not _runs_alone(item), group=group
    )


def _runs_alone(item: pytest.Item) -> bool:
    """A case that must not overlap others: one that uses process-wide state through a
    fixture; one whose own warning filters (``@pytest.mark.filterwarnings``) would apply to
    whatever runs meanwhile, as pytest's filters are the process's; one that takes ``request``
    (``request.getfixturevalue`` sets fixtures up, which only the main thread may do)."""
    if SERIAL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    if item.get_closest_marker("filterwarnings") is not None:
        return True
    function = getattr(item, "function", None)
    try:
        parameters = inspect.signature(function).parameters if function is not None else {}
    except (TypeError, ValueError):
        return False
    return "request" in parameters


def _marker_value(
    item: pytest.Item, marks: list[pytest.Mark], name: str, kind: type, valid: str
) -> Any:
    """The closest ``eval`` marker's ``name`` keyword (a case's own marker comes first)."""
    for mark in marks:
        if name in mark.kwargs:
            value = mark.kwargs[name]
            if not isinstance(value, kind):
                raise pytest.UsageError(
                    f"evalrows: @pytest.mark.eval({name}={value!r}) of {item.nodeid}: "
                    f"{name} takes {valid}"
                )
            return value
    return None


def concurrency_blocker(config: pytest.Config) -> str | None:
    """Why no case may overlap another in this session, or None."""
    for option, what in (
        ("usepdb", "--pdb"),
        ("trace", "--trace"),
        ("setupplan", "--setup-plan"),  # before --setup-only, which pytest sets with it
        ("setuponly", "--setup-only"),
        ("setupshow", "--setup-show"),
    ):
        if config.getoption(option, False):
            return what
    return None


def batch_key(item: pytest.Item) -> tuple[Any, ...]:
    """Cases with equal keys share every node and higher-scoped fixture above them: they may
    be set up side by side. A parameter of a wider scope than the function's is part of it."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:  # no parameters: none of a wider scope either
        return (item.parent, ())
    scopes: dict[str, Any] = getattr(callspec, "_arg2scope", None) or {}
    wider = tuple(
        (name, index)
        for name, index in sorted(callspec.indices.items())
        if name not in scopes or getattr(scopes[name], "value", scopes[name]) != "function"
    )
    return (item.parent, wider)
