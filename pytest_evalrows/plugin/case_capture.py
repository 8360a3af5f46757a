"""Keeping concurrent bodies' output their own while the main thread runs pytest's phases:
two plugins around each phase, one inside pytest's capture and one outside it."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from .case_output import OutputRouting, StreamName

__all__ = ["CaseCapture"]


class CaseCapture:
    """Routes bodies' output while ``overlapping()`` says cases overlap."""

    def __init__(self, config: pytest.Config, overlapping: Callable[[], bool]) -> None:
        self.config = config
        self.routing = OutputRouting()
        self.overlapping = overlapping
        # A plugin has one implementation per hook: one plugin for each side of the capture.
        self.inside = _InsidePhase(self)
        self.outside = _AfterPhase(self)

    def start(self) -> None:
        self.routing.start(_capture_saved_streams(self.config))

    def stop(self) -> None:
        self.routing.stop()


class _InsidePhase:
    """Innermost, so inside pytest's capture and log capture of a main-thread phase: what a
    running body writes meanwhile stays the body's."""

    def __init__(self, capture: CaseCapture) -> None:
        self.capture = capture

    def _phase(self) -> Generator[None, Any, Any]:
        if not self.capture.overlapping():
            return (yield)
        with self.capture.routing.phase():
            return (yield)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._phase())

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._phase())

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, Any]:
        return (yield from self._phase())


class _AfterPhase:
    """Outermost: puts the routers back the moment pytest's capture has suspended."""

    def __init__(self, capture: CaseCapture) -> None:
        self.capture = capture

    def _reroute(self) -> Generator[None, Any, Any]:
        try:
            return (yield)
        finally:
            if self.capture.overlapping():
                self.capture.routing.reinstall()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._reroute())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._reroute())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, Any]:
        return (yield from self._reroute())


def _capture_saved_streams(config: pytest.Config) -> list[tuple[Any, StreamName]]:
    """The objects in which pytest's capture keeps the streams it puts back into ``sys``
    when it suspends (``SysCapture._old``, an ``FDCapture``'s through its ``syscapture``).
    Private to pytest: when they are not found, a body's write in the moment between pytest
    suspending and the routers being put back may reach the terminal."""
    manager = config.pluginmanager.get_plugin("capturemanager")
    capturing = getattr(manager, "_global_capturing", None)
    found: list[tuple[Any, StreamName]] = []
    pairs: tuple[tuple[str, StreamName], ...] = (("out", "stdout"), ("err", "stderr"))
    for attribute, name in pairs:
        capture = getattr(capturing, attribute, None)
        holder = getattr(capture, "syscapture", capture)
        if holder is not None and hasattr(holder, "_old"):
            found.append((holder, name))
    return found
