"""Inner sessions whose eval cases run at once: a ``flight`` module the inner tests import to
say when each case is in its body, and the reader of what it saw.

``flight.enter(name, group)`` / ``flight.leave(name, group)`` bracket a body: they count the
bodies in flight per group ("all" unless told; under a lock, so the count is exact whatever
thread or task calls them), keep the most seen at once per group, the thread each body ran
in, and a wall-clock stamp of every start and end.
``await flight.gathered(n, group)`` waits (bounded) until ``n`` bodies are in flight at once.
``flight.event(text)`` appends to an ordered list of events (fixture setup, body, teardown).
The inner conftest writes all of it to ``flight.json`` when the session finishes.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

FLIGHT = textwrap.dedent(
    """
    import asyncio
    import threading
    import time

    _lock = threading.Lock()
    in_flight = {}
    most = {}
    starts = {}
    ends = {}
    threads = {}
    events = []


    def enter(name, group="all"):
        with _lock:
            in_flight[group] = in_flight.get(group, 0) + 1
            most[group] = max(most.get(group, 0), in_flight[group])
            starts[name] = time.time()
            threads[name] = threading.current_thread().name
            events.append(f"body-start {name}")


    def leave(name, group="all"):
        with _lock:
            in_flight[group] -= 1
            ends[name] = time.time()
            events.append(f"body-end {name}")


    async def gathered(n, group="all", timeout=5.0):
        # Wait (bounded) until n bodies of group are in flight; whether they were.
        deadline = time.monotonic() + timeout
        while in_flight.get(group, 0) < n:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True


    def event(text):
        with _lock:
            events.append(text)


    def dump():
        return {
            "most": most,
            "in_flight": in_flight,
            "starts": starts,
            "ends": ends,
            "threads": threads,
            "events": events,
        }
    """
)

CONFTEST = textwrap.dedent(
    """
    import json
    import pathlib

    import flight

    HERE = pathlib.Path(__file__).parent


    def pytest_sessionfinish(session):
        (HERE / "flight.json").write_text(json.dumps(flight.dump()))
    """
)


@dataclass
class Flight:
    """What the bodies of one inner session did, as ``flight`` saw it."""

    most: dict[str, int]
    in_flight: dict[str, int]
    starts: dict[str, float]
    ends: dict[str, float]
    threads: dict[str, str]
    events: list[str]

    def span(self) -> float:
        """From the first body's start to the last body's end, in seconds."""
        return max(self.ends.values()) - min(self.starts.values())


def install(pytester: pytest.Pytester, conftest: str = "") -> None:
    """The ``flight`` module and a conftest that dumps it (plus ``conftest``'s own text)."""
    pytester.makepyfile(flight=FLIGHT)
    pytester.makeconftest(CONFTEST + textwrap.dedent(conftest))


def flight(pytester: pytest.Pytester) -> Flight:
    """What ``flight`` saw in the last inner session (its conftest wrote it at the end)."""
    data = json.loads(Path(pytester.path / "flight.json").read_text())
    return Flight(**data)
