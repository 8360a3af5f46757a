"""Where the bodies of eval cases run: async ones as tasks on one event loop per process (in a
daemon thread), sync ones marked ``concurrent=True`` on a thread pool."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ..core.loop_thread import LoopThread
from . import case_running
from .case_output import current_case
from .case_running import CaseRun

__all__ = ["Bodies"]


class Bodies:
    """The event loop and the thread pool, each made on first use."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._loop: LoopThread | None = None
        self._threads: _DaemonThreads | None = None

    def start(self, run: CaseRun) -> concurrent.futures.Future[Any] | None:
        """Start the case's body in its context (a task takes a copy of it); None when the
        loop is closed."""
        function, arguments = case_running.body_of(run.item)
        run.start = time.time()
        if run.kind.is_async:
            loop = self.event_loop()
            return run.context.run(loop.submit, lambda: _body_async(run, function, arguments))
        return self.thread_pool().submit(run.context.run, _body_sync, run, function, arguments)

    def run_alone(self, item: pytest.Item) -> None:
        """An async case that runs alone: on the loop, the main thread waiting for it."""
        __tracebackhide__ = True
        function, arguments = case_running.body_of(item)
        future = self.event_loop().submit(lambda: _outcome_of(function, arguments))
        if future is None:
            pytest.fail("evalrows: the event loop of async eval cases is closed", pytrace=False)
        try:
            error = future.result()
        except BaseException:
            future.cancel()
            raise
        if error is not None:
            raise error

    def event_loop(self) -> LoopThread:
        if self._loop is None:
            self._loop = LoopThread(self.concurrency, name="evalrows-cases-loop")
        return self._loop

    def thread_pool(self) -> _DaemonThreads:
        if self._threads is None:
            self._threads = _DaemonThreads(self.concurrency)
        return self._threads

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
        if self._threads is not None:
            self._threads.close()


_Job = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class _DaemonThreads:
    """Threads for sync bodies. Daemon threads, unlike a ThreadPoolExecutor's, which the
    interpreter waits for at exit: a body a Ctrl-C gave up on must not hold the process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Any, tuple[Any, ...]] | None
        ] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, function: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if len(self._threads) < self.size:
            thread = threading.Thread(
                target=self._work, name=f"evalrows-case_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._jobs.put((future, function, args))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args))
            except BaseException as exc:  # the body's own errors are kept by _body_sync
                future.set_exception(exc)

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


async def _outcome_of(
    function: Callable[..., Coroutine[Any, Any, Any]], arguments: dict[str, Any]
) -> BaseException | None:
    """What the body raised, handed back rather than raised on the loop: a SystemExit or
    KeyboardInterrupt raised there would leave the loop, not reach the test."""
    try:
        await function(**arguments)
    except BaseException as exc:
        return exc
    return None


async def _body_async(
    run: CaseRun, function: Callable[..., Coroutine[Any, Any, Any]], arguments: dict[str, Any]
) -> None:
    current_case.set(run.output)  # in the task's own copy of the case's context
    try:
        await function(**arguments)
    except BaseException as exc:  # cancelled included: the main thread reports it
        run.error = exc
    finally:
        run.stop = time.time()
        run.ended = True


def _body_sync(run: CaseRun, function: Callable[..., Any], arguments: dict[str, Any]) -> None:
    token = current_case.set(run.output)
    try:
        function(**arguments)
    except BaseException as exc:
        run.error = exc
    finally:
        current_case.reset(token)
        run.stop = time.time()
        run.ended = True
