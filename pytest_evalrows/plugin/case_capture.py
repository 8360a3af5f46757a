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
        __tracebackhide__ = True
        if not self.capture.overlapping():
            return (yield)
        with self.capture.routing.phase():
            return (yield)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        return (yield from self._phase())

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        return (yield from self._phase())

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        return (yield from self._phase())


class _AfterPhase:
    """Outermost: puts the routers back the moment pytest's capture has suspended."""

    def __init__(self, capture: CaseCapture) -> None:
        self.capture = capture

    def _reroute(self) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        try:
            return (yield)
        finally:
            if self.capture.overlapping():
                self.capture.routing.reinstall()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        return (yield from self._reroute())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        return (yield from self._reroute())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, Any]:
        __tracebackhide__ = True
        return (yield from self._reroute())


def _capture_saved_streams(
    config: pytest.Config,
) -> list[tuple[Any, StreamName, tuple[str, ...]]]:
    """Where pytest's capture keeps the streams it puts into ``sys``: when a phase begins its
    ``tmpfile``, and when it ends the ``_old`` one it replaced (``SysCapture``'s, an
    ``FDCapture``'s through its ``syscapture``). An ``FDCapture`` reads what was captured from
    the file descriptor, so its ``tmpfile`` may be routed; a plain ``SysCapture`` reads its own
    (``--capture=sys``, ``tee-sys``), which then stays, and a body's write in the moment
    between a phase beginning and the routers being put back may go to that phase. Private to
    pytest: when none is found, the same holds at both ends of a phase."""
    manager = config.pluginmanager.get_plugin("capturemanager")
    capturing = getattr(manager, "_global_capturing", None)
    found: list[tuple[Any, StreamName, tuple[str, ...]]] = []
    pairs: tuple[tuple[str, StreamName], ...] = (("out", "stdout"), ("err", "stderr"))
    for attribute, name in pairs:
        capture = getattr(capturing, attribute, None)
        holder = getattr(capture, "syscapture", None)
        if holder is not None and hasattr(holder, "_old"):
            found.append((holder, name, ("tmpfile", "_old")))
        elif capture is not None and hasattr(capture, "_old"):
            found.append((capture, name, ("_old",)))
    return found
