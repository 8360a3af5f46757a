"""Eval cases that run at once in one pytest process.

The main thread stays pytest's: it sets each case up, logs every report and tears each case
down, one at a time, through pytest's own hooks. Only the bodies leave it: an ``async def``
case's as a task on the plugin's event loop, a sync case marked ``concurrent=True`` on a
thread. Between its setup and its teardown a case is parked (``parking``), so that the next one
can be set up; once its body is done the main thread replays its call phase through pytest's
hooks (where ``pytest_pyfunc_call`` hands over what the body did), unparks it and tears it
down. Reports therefore reach every plugin as for any test, in the order the cases finish.

Each case's setup, body and teardown run in a ``contextvars.Context`` of its own: its row, its
OpenTelemetry context and its captured output travel with it.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from . import case_running
from .case_bodies import Bodies
from .case_capture import CaseCapture
from .case_kinds import CaseKind, batch_key
from .case_output import CaseOutput, replay
from .case_running import CaseRun, Phases
from .parking import Parking, set_up_key

__all__ = ["CaseRunner"]

# How long a Ctrl-C waits for the running cases to wind down before reporting them.
INTERRUPT_GRACE_S = 2.0


class CaseRunner:
    """Registered when the session has eval cases the plugin runs itself."""

    def __init__(
        self,
        config: pytest.Config,
        kinds: dict[pytest.Item, CaseKind],
        *,
        slots: Slots,
        overlap: bool,
        on_overlap: Callable[[bool], None],
    ) -> None:
        self.config = config
        self.kinds = kinds
        self.slots = slots
        # False when cases may not overlap here (concurrency 1, --pdb, a pytest whose
        # internals parking does not know): async cases then run one at a time, in place.
        self.overlap = overlap
        self._on_overlap = on_overlap
        self.phases = Phases(config)
        self.capture = CaseCapture(config, lambda: bool(self.running))
        self.bodies = Bodies(slots.concurrency)
        self.running: dict[pytest.Item, CaseRun] = {}
        self._done: queue.SimpleQueue[CaseRun] = queue.SimpleQueue()
        self._replays: dict[pytest.Item, CaseRun] = {}
        self._retries: list[pytest.Item] = []
        self._key: tuple[Any, ...] | None = None
        self._parking: Parking | None = None
        self._session: pytest.Session | None = None

    # -- pytest's hooks ------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        if not self.overlap:
            return None
        self._session = item.session
        kind = self.kinds.get(item)
        if kind is None or not kind.concurrent:
            if self.running or self._retries:  # never expected: a batch ends before
                self._drain(item)
            return None
        stopped: BaseException | None = None
        try:
            self._take(item, kind, nextitem)
        except BaseException as exc:  # Ctrl-C, pytest.exit: the running cases end reported
            stopped = exc
        if stopped is not None:
            # Outside the handler, so that no case's report chains the interrupt to it.
            self._abort(stopped)
            raise stopped
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Any:
        run = self._replays.get(pyfuncitem)
        if run is not None:
            __tracebackhide__ = True
            replay(run.output)
            run.raise_outcome()
            return True
        kind = self.kinds.get(pyfuncitem)
        if kind is not None and kind.is_async:
            self.bodies.run_alone(pyfuncitem)
            return True
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> None:
        # Every function-scoped definition a case's setup runs is parked with it.
        if self.overlap and fixturedef.scope == "function" and request.node in self.kinds:
            request.node.stash.setdefault(set_up_key, []).append(fixturedef)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.close()

    @property
    def plugins(self) -> tuple[object, ...]:
        """The runner and the two plugins that keep bodies' output their own."""
        return (self, self.capture.inside, self.capture.outside)

    def close(self) -> None:
        if self.running:
            self._abort()
        self.bodies.close()
        self._stop_overlapping()
        if self._parking is not None:
            self._parking.stop()

    # -- cases at once -------------------------------------------------------------------

    def _take(self, item: pytest.Item, kind: CaseKind, nextitem: pytest.Item | None) -> None:
        """Start ``item`` once there is room for it; end the batch when ``nextitem`` cannot
        join it."""
        key = batch_key(item)
        if (self.running or self._retries) and key != self._key:
            self._drain(item)
        self._key = key
        self._harvest(upcoming=item)
        while not self._stopping() and not self.slots.free_for(kind):
            self._harvest(upcoming=item, block=True)
        if self._stopping():  # -x, --maxfail: no new case; the running ones finish
            self._drain(None)
            return
        self._start(item, kind, upcoming=nextitem)
        if self._stopping() or not self._joins(nextitem):
            self._drain(None if self._stopping() else nextitem)

    def _joins(self, nextitem: pytest.Item | None) -> bool:
        if nextitem is None:
            return False
        kind = self.kinds.get(nextitem)
        return kind is not None and kind.concurrent and batch_key(nextitem) == self._key

    def _stopping(self) -> bool:
        return self._session is not None and bool(
            self._session.shouldfail or self._session.shouldstop
        )

    def _start(self, item: pytest.Item, kind: CaseKind, upcoming: pytest.Item | None) -> None:
        """Set the case up (main thread), park it and start its body."""
        parking = self._parking_for(item)
        context = contextvars.copy_context()
        case_running.fresh_request(item)
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        run = CaseRun(item, kind, context, CaseOutput())
        self.phases.begin(run)
        setup = context.run(self.phases.run, run, "setup")
        self.capture.routing.reinstall()
        parking.park(item)
        if not setup.passed:
            self._end(run, upcoming)
            return
        self._start_overlapping()
        self.running[item] = run
        self.slots.take(kind)
        future = self.bodies.start(run)
        if future is None:
            run.error = RuntimeError("the event loop of async eval cases is closed")
            self._done.put(run)
            return
        run.future = future
        future.add_done_callback(lambda _: self._done.put(run))

    def _harvest(self, upcoming: pytest.Item | None, *, block: bool = False) -> None:
        """End every case whose body is done (first waiting for one when ``block``), then
        start the reruns that are due while there is room."""
        if block:
            run = self._wait()
            if run is not None:
                self._finish(run, upcoming)
        while True:
            try:
                run = self._done.get_nowait()
            except queue.Empty:
                break
            self._finish(run, upcoming)
        # A rerun due is part of its case's run: it is started even once pytest says stop.
        while self._retries:
            item = self._retries[0]
            kind = self.kinds[item]
            if not self.slots.free_for(kind):
                break
            self._retries.pop(0)
            self._start(item, kind, upcoming=upcoming)

    def _wait(self) -> CaseRun | None:
        while self.running:
            with contextlib.suppress(queue.Empty):
                return self._done.get(timeout=0.25)
        return None

    def _drain(self, nextitem: pytest.Item | None) -> None:
        """Let every running case (and every rerun due) finish; the last one's teardown
        goes towards ``nextitem``."""
        while self.running or self._retries:
            self._harvest(upcoming=nextitem, block=bool(self.running))
        self._stop_overlapping()

    def _finish(self, run: CaseRun, upcoming: pytest.Item | None) -> None:
        """The case's body is done: replay its call phase, then tear it down."""
        item = run.item
        self.running.pop(item, None)
        self.slots.give_back(run.kind)
        run.settle()
        self._replays[item] = run
        try:
            run.main_context().run(self.phases.run, run, "call")
        except BaseException:  # pytest.exit from the body: torn down before pytest stops
            run.interrupted = True
            with contextlib.suppress(BaseException):
                self._end(run, None)
            raise
        finally:
            self._replays.pop(item, None)
            self.capture.routing.reinstall()
        self._end(run, upcoming)

    def _end(self, run: CaseRun, upcoming: pytest.Item | None) -> None:
        item = run.item
        parking = self._parking_for(item)
        # Towards another parked case while there is one: what they share stays set up.
        target = parking.sibling(item) or (None if self._stopping() else upcoming)
        parking.unpark(item)
        try:
            run.main_context().run(self.phases.run, run, "teardown", nextitem=target)
        finally:
            self.capture.routing.reinstall()
            case_running.drop_request(item)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        if run.rerun:
            self._retries.append(item)

    def _abort(self, stopped: BaseException | None = None) -> None:
        """Ctrl-C or pytest.exit: cancel the running cases, report them and tear them down."""
        try:
            _cancel(list(self.running.values()), self._done)
            # Each is reported as cancelled, whatever its body did after the Ctrl-C.
            for run in list(self.running.values()):
                run.interrupted = True
                if stopped is not None and not isinstance(stopped, KeyboardInterrupt):
                    run.stopped_by = f"{type(stopped).__name__}: {stopped}".rstrip(": ")
                self._finish(run, None)
        except BaseException:  # a second Ctrl-C: what is left is left
            pass
        finally:
            self.running.clear()
            self._retries.clear()
            self._stop_overlapping()

    # -- resources -----------------------------------------------------------------------

    def _parking_for(self, item: pytest.Item) -> Parking:
        if self._parking is None:
            self._parking = Parking(item.session)
            self._parking.start()
        return self._parking

    def _start_overlapping(self) -> None:
        if not self.running:
            self.capture.start()
            self._on_overlap(True)

    def _stop_overlapping(self) -> None:
        self.capture.stop()
        self._on_overlap(False)


class Slots:
    """How many cases may run at once, in all and per concurrency group."""

    def __init__(self, concurrency: int, group_limits: dict[str, int]) -> None:
        self.concurrency = concurrency
        self.group_limits = group_limits
        self.taken = 0
        self._groups: Counter[str] = Counter()

    def free_for(self, kind: CaseKind) -> bool:
        if self.taken >= self.concurrency:
            return False
        limit = self.group_limits.get(kind.group) if kind.group is not None else None
        return limit is None or self._groups[kind.group or ""] < limit

    def take(self, kind: CaseKind) -> None:
        self.taken += 1
        if kind.group is not None:
            self._groups[kind.group] += 1

    def give_back(self, kind: CaseKind) -> None:
        self.taken -= 1
        if kind.group is not None:
            self._groups[kind.group] -= 1


def _cancel(runs: list[CaseRun], done: queue.SimpleQueue[CaseRun]) -> None:
    """Cancel the running cases' bodies and give them a moment to wind down: an async body
    is cancelled at once, a sync one cannot be and has ``INTERRUPT_GRACE_S``."""
    for run in runs:
        if run.future is not None:
            run.future.cancel()
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    ended = 0
    while ended < len(runs) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            done.get(timeout=0.05)
            ended += 1
