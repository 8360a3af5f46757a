"""Each concurrent case's output, kept as its own while its body runs away from pytest's capture.

Concurrent eval bodies run on other threads while the main thread runs pytest's phases one at a
time. pytest's output capture (``sys.stdout``/``sys.stderr`` swapped per phase) and its log
capture (a ``LogCaptureHandler`` on the root logger per phase) are process-global, so a body's
prints and records would land in whatever phase the main thread is running. Here a body's
writes and records follow ``current_case`` (set in the body's own ``contextvars.Context``) into
that case's buffers; ``replay`` later hands them to pytest inside the case's replayed call phase.

Only the standard library is imported: pytest's handlers are known by their class name.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

StreamName = Literal["stdout", "stderr"]
_STREAM_NAMES: tuple[StreamName, ...] = ("stdout", "stderr")
# pytest's report and caplog handlers; matched by name so this module needs no pytest import.
_PYTEST_HANDLER_CLASS = "LogCaptureHandler"


@dataclass
class CaseOutput:
    """What one case's body wrote while it ran away from pytest's capture."""

    stdout: io.StringIO = field(default_factory=io.StringIO)
    stderr: io.StringIO = field(default_factory=io.StringIO)
    records: list[logging.LogRecord] = field(default_factory=list)
    # Replayed into pytest's capture: what a task the body left running writes later is no
    # longer the case's, and goes where anyone else's goes.
    closed: bool = False


current_case: contextvars.ContextVar[CaseOutput | None] = contextvars.ContextVar(
    "evalrows_current_case", default=None
)


def _open_case() -> CaseOutput | None:
    """The case whose body runs here, unless its output was already handed to pytest."""
    case = current_case.get()
    return None if case is None or case.closed else case


# One lock for every case buffer: a body may hand its context to several threads or tasks, and
# a body may keep a reference to an older router, so no single router sees all writers.
_buffers_lock = threading.Lock()


class _RoutedStream:
    """Stands in for ``sys.stdout`` or ``sys.stderr``: a body's writes go to its case's buffer,
    everyone else's to the wrapped stream."""

    __slots__ = ("_name", "_wrapped")

    def __init__(self, wrapped: Any, name: StreamName) -> None:
        self._wrapped = wrapped
        self._name = name

    @property
    def wrapped(self) -> Any:
        return self._wrapped

    def write(self, text: str) -> int:
        case = _open_case()
        if case is None:
            written: int = self._wrapped.write(text)
            return written
        buffer = case.stdout if self._name == "stdout" else case.stderr
        with _buffers_lock:
            buffer.write(text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        # Everything but writing (flush, fileno, isatty, encoding, buffer, ...) is the stream's.
        return getattr(self._wrapped, name)

    def __repr__(self) -> str:
        return f"<routed {self._name} over {self._wrapped!r}>"


class _KeepCaseRecords(logging.Handler):
    """On the root logger: keeps each record a body emits in its case, untouched (no formatting,
    no printing); the record still reaches the other handlers as usual."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)

    def emit(self, record: logging.LogRecord) -> None:
        case = _open_case()
        if case is not None:
            case.records.append(record)


class _NotFromABody(logging.Filter):
    """Lets through only records emitted outside every case: a body's belong to its own case."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _open_case() is None


def _pytest_log_handlers() -> list[logging.Handler]:
    root = logging.getLogger()
    return [h for h in root.handlers if type(h).__name__ == _PYTEST_HANDLER_CLASS]


def _route_streams() -> dict[StreamName, tuple[Any, _RoutedStream]]:
    """Wraps each of sys.stdout/sys.stderr that is not a router already; returns what it
    replaced and the router it put there, by stream name."""
    replaced: dict[StreamName, tuple[Any, _RoutedStream]] = {}
    for name in _STREAM_NAMES:
        current = getattr(sys, name)
        if isinstance(current, _RoutedStream):
            continue
        router = _RoutedStream(current, name)
        setattr(sys, name, router)
        replaced[name] = (current, router)
    return replaced


class OutputRouting:
    """Routes bodies' output to their cases from ``start`` to ``stop``, and keeps pytest's
    per-phase capture free of it while the main thread runs a phase."""

    def __init__(self) -> None:
        self._started = False
        self._keeper = _KeepCaseRecords()
        # pytest's log handlers are the same two objects all session: once filtered they stay
        # so until ``stop``, also in the moment between pytest adding one and ``phase``.
        self._not_from_a_body = _NotFromABody()
        self._filtered: list[logging.Handler] = []
        self._saved: list[tuple[Any, str]] = []

    def start(self, saved: Iterable[tuple[Any, StreamName, tuple[str, ...]]] = ()) -> None:
        """Bodies may run from now on. ``saved``: (holder, stream name, attributes) of objects
        that later put a stream they keep in those attributes into ``sys`` (pytest's capture
        puts its ``tmpfile`` there when a phase begins and its ``_old`` back when it ends).
        Those become routers too, so no moment is left unrouted."""
        if self._started:
            return
        self._started = True
        _route_streams()
        self._saved = []
        for holder, name, attributes in saved:
            for attribute in attributes:
                kept = getattr(holder, attribute, None)
                if kept is not None and not isinstance(kept, _RoutedStream):
                    setattr(holder, attribute, _RoutedStream(kept, name))
                    self._saved.append((holder, attribute))
        logging.getLogger().addHandler(self._keeper)

    def reinstall(self) -> None:
        """After each main-thread phase: pytest's capture puts its saved streams back when it
        suspends, dropping our routers, so wrap whatever is there now."""
        if self._started:
            _route_streams()

    @contextlib.contextmanager
    def phase(self) -> Iterator[None]:
        """One main-thread phase, inside pytest's capture: bodies' writes and records stay out
        of it."""
        replaced = _route_streams()
        for handler in _pytest_log_handlers():
            if handler not in self._filtered:
                handler.addFilter(self._not_from_a_body)
                self._filtered.append(handler)
        try:
            yield
        finally:
            for name, (previous, router) in replaced.items():
                # Someone else's stream set during the phase stays; only ours is undone.
                if getattr(sys, name) is router:
                    setattr(sys, name, previous)

    def stop(self) -> None:
        """No body runs any more: put back the streams our routers wrap. Idempotent."""
        if not self._started:
            return
        self._started = False
        for name in _STREAM_NAMES:
            current = getattr(sys, name)
            if isinstance(current, _RoutedStream):
                setattr(sys, name, current.wrapped)
        logging.getLogger().removeHandler(self._keeper)
        for holder, attribute in self._saved:
            kept = getattr(holder, attribute, None)
            if isinstance(kept, _RoutedStream):
                setattr(holder, attribute, kept.wrapped)
        self._saved.clear()
        for handler in self._filtered:
            handler.removeFilter(self._not_from_a_body)
        self._filtered.clear()


def replay(case: CaseOutput) -> None:
    """In the main thread, inside pytest's capture of the case's replayed call phase: gives
    pytest the case's text and records as that phase's own."""
    case.closed = True
    for text, stream_name in (
        (case.stdout.getvalue(), "stdout"),
        (case.stderr.getvalue(), "stderr"),
    ):
        if text:
            getattr(sys, stream_name).write(text)
    handlers = _pytest_log_handlers()
    for record in case.records:
        for handler in handlers:
            # Handler.handle skips the level check the logger would have made.
            if record.levelno >= handler.level:
                handler.handle(record)
