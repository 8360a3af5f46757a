"""One concurrent case: its state while it runs, and its phases as pytest's runner makes them.

A phase is run as ``call_and_report`` does it: the phase's hook through ``CallInfo.from_call``,
the report made by ``pytest_runtest_makereport``, logged by ``pytest_runtest_logreport``, and
``pytest_exception_interact`` for an error. A failed execution that pytest-rerunfailures would
run again (``--reruns``, ``@pytest.mark.flaky``) is reported as a rerun and run again.
"""

from __future__ import annotations

import bdb
import concurrent.futures
import contextlib
import contextvars
import inspect
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from .case_kinds import CaseKind
from .case_output import CaseOutput, current_case

__all__ = ["CaseRun", "Phases", "body_of", "drop_request", "fresh_request"]

Phase = Literal["setup", "call", "teardown"]


@dataclass(eq=False)
class CaseRun:
    """One execution of a case between its setup and its teardown."""

    item: pytest.Item
    kind: CaseKind
    context: contextvars.Context
    output: CaseOutput
    future: concurrent.futures.Future[Any] | None = None
    start: float = 0.0
    stop: float = 0.0
    # What the body raised (a failed assert, pytest.skip, a cancellation).
    error: BaseException | None = None
    # The body returned or raised (set last, by the thread or task that ran it).
    ended: bool = False
    # Cut short (Ctrl-C, pytest.exit) before its body ended; why, as the report says it.
    interrupted: bool = False
    stopped_by: str = "KeyboardInterrupt"
    # A phase failed and pytest-rerunfailures' settings ask for another execution.
    rerun: bool = False
    execution: int = 0
    reruns: int = 0
    failed_phases: list[str] = field(default_factory=list)

    def settle(self) -> None:
        """The body ended, was cancelled or is given up on: make its outcome final."""
        future = self.future
        if future is not None and future.cancelled() and self.error is None:
            self.interrupted = True
        if self.stop == 0.0:
            if self.error is None:
                self.interrupted = True
            self.stop = self.start

    def main_context(self) -> contextvars.Context:
        """Where the main thread runs the case's later phases: its own context, or a copy of
        it while a thread still runs the body in it (a Ctrl-C gave up waiting for it)."""
        # An async body runs in a copy of its own: the case's context is never entered there.
        if self.ended or self.kind.is_async:
            return self.context
        copy = self.context.copy()
        copy.run(current_case.set, None)  # the phases' output is pytest's, not the body's
        return copy

    def raise_outcome(self) -> None:
        """In the replayed call phase: the body's outcome, as pytest would have seen it."""
        __tracebackhide__ = True
        if self.interrupted:
            pytest.fail(f"interrupted: the case was cancelled by {self.stopped_by}", pytrace=False)
        if self.error is not None:
            raise self.error


def body_of(item: pytest.Item) -> tuple[Any, dict[str, Any]]:
    """The test function and the arguments pytest would call it with."""
    function = getattr(item, "obj")  # noqa: B009 - pytest.Item does not declare obj
    funcargs: dict[str, Any] = getattr(item, "funcargs", None) or {}
    info = getattr(item, "_fixtureinfo", None)
    names = getattr(info, "argnames", None)
    if names is None:
        names = [name for name in inspect.signature(function).parameters if name in funcargs]
    return function, {name: funcargs[name] for name in names}


def fresh_request(item: pytest.Item) -> None:
    """A rerun's item gets a new fixture request, as pytest's runner gives it."""
    if hasattr(item, "_request") and not item._request:
        item._initrequest()  # type: ignore[attr-defined]


def drop_request(item: pytest.Item) -> None:
    """After the teardown: no reference to the case's fixture values is kept."""
    if hasattr(item, "_request"):
        item._request = False
        item.funcargs = None  # type: ignore[attr-defined]


class Phases:
    """Runs a case's phases through pytest's hooks, from the main thread."""

    def __init__(self, config: pytest.Config) -> None:
        self.reraise: tuple[type[BaseException], ...] = (pytest.exit.Exception, KeyboardInterrupt)
        self.reruns_plugin: Any = config.pluginmanager.get_plugin("rerunfailures")
        # In an xdist worker: the plugin that sends reports to the controller, checking that
        # each is of the item whose protocol runs (its item_index).
        self._worker: Any = next(
            (
                plugin
                for plugin in config.pluginmanager.get_plugins()
                if type(plugin).__name__ == "WorkerInteractor"
            ),
            None,
        )
        self._indexes: dict[int, int] | None = None

    def begin(self, run: CaseRun) -> None:
        """A new execution of the case: count it, and learn how many reruns it may have."""
        counts = run.item.stash.setdefault(_executions_key, [0])
        counts[0] += 1
        run.execution = counts[0]
        plugin = self.reruns_plugin
        if plugin is not None:
            count = plugin.get_reruns_count(run.item)
            run.reruns = count if isinstance(count, int) else 0

    def run(self, run: CaseRun, when: Phase, **kwargs: Any) -> pytest.TestReport:
        with self._reporting_as(run.item):
            return self._run(run, when, **kwargs)

    @contextlib.contextmanager
    def _reporting_as(self, item: pytest.Item) -> Iterator[None]:
        """Under xdist, the worker sends a report as one of the item its protocol runs: for
        the while, that is this case."""
        worker = self._worker
        if worker is None:
            yield
            return
        if self._indexes is None:
            self._indexes = {id(each): index for index, each in enumerate(item.session.items)}
        previous = getattr(worker, "item_index", None)
        worker.item_index = self._indexes.get(id(item), previous)
        try:
            yield
        finally:
            worker.item_index = previous

    def _run(self, run: CaseRun, when: Phase, **kwargs: Any) -> pytest.TestReport:
        item = run.item
        ihook = item.ihook
        hook = {
            "setup": ihook.pytest_runtest_setup,
            "call": ihook.pytest_runtest_call,
            "teardown": ihook.pytest_runtest_teardown,
        }[when]

        def phase() -> None:
            __tracebackhide__ = True
            hook(item=item, **kwargs)

        call = pytest.CallInfo.from_call(phase, when=when, reraise=self.reraise)
        if when == "call" and run.stop:  # the body's own time, not the replay's
            call.start, call.stop, call.duration = run.start, run.stop, run.stop - run.start
        report: pytest.TestReport = ihook.pytest_runtest_makereport(item=item, call=call)
        if when == "setup":
            # For an xdist controller whose worker dies: this case was running beside others.
            report.evalrows_overlapped = True  # type: ignore[attr-defined]
        elif run.interrupted:
            # Cut short, not failed: its row is an error, run again by --eval-resume=finished.
            report.evalrows_interrupted = True  # type: ignore[attr-defined]
        if run.reruns:
            self._mark_rerun(run, report)
        ihook.pytest_runtest_logreport(report=report)
        if _interactive(call, report):
            ihook.pytest_exception_interact(node=item, call=call, report=report)
        return report

    def _mark_rerun(self, run: CaseRun, report: pytest.TestReport) -> None:
        """As pytest-rerunfailures does: a failed phase of an execution that may be rerun is
        reported as ``rerun``, and the case runs again once torn down."""
        report.rerun = run.execution - 1  # type: ignore[attr-defined]
        if not report.failed or hasattr(report, "wasxfail") or run.execution > run.reruns:
            return
        if run.interrupted:  # cancelled, not failed: the session is stopping
            return
        item = run.item
        if any(getattr(item, "_terminal_errors", {}).values()):
            return  # --only-rerun / --rerun-except rule this error out
        # The failures of this execution, for a condition that looks at the error.
        failures = getattr(self.reruns_plugin, "_get_reruns_condition_failures", None)
        if failures is not None:
            condition = self.reruns_plugin.get_reruns_condition(item, failures(item))
        else:
            condition = self.reruns_plugin.get_reruns_condition(item)
        if not condition:
            return
        report.outcome = "rerun"  # type: ignore[assignment]
        run.rerun = True


_executions_key = pytest.StashKey[list[int]]()


def _interactive(call: pytest.CallInfo[None], report: pytest.TestReport) -> bool:
    """Whether pytest would call ``pytest_exception_interact`` for this phase."""
    if call.excinfo is None or hasattr(report, "wasxfail"):
        return False
    unittest = sys.modules.get("unittest")
    skip_types: tuple[type[BaseException], ...] = (pytest.skip.Exception, bdb.BdbQuit)
    if unittest is not None:
        skip_types += (unittest.SkipTest,)
    return not isinstance(call.excinfo.value, skip_types)
