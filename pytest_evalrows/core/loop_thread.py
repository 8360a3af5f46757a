"""One event loop run by a daemon thread: async judges run on one, async eval cases on another."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

# How long closing gives cancelled tasks to wind down.
CLOSE_GRACE_S = 5.0
# How long a loop that has cancelled its tasks is given to stop.
STOP_GRACE_S = 1.0


class LoopThread:
    """One event loop, run by a daemon thread started on first use."""

    def __init__(self, concurrency: int, name: str = "evalrows-judges-loop") -> None:
        self.concurrency = concurrency
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    @property
    def is_current(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    @property
    def slots(self) -> asyncio.Semaphore:
        """On the loop: the semaphore that bounds how many tasks run at once."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        return self._slots

    def submit(
        self, make: Callable[[], Coroutine[Any, Any, Any]]
    ) -> concurrent.futures.Future[Any] | None:
        """Run ``make()`` on the loop, as a task in a copy of the caller's context; None (and
        nothing made) once closed."""
        with self._lock:
            if self._closed:
                return None
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=_serve, args=(self._loop,), name=self.name, daemon=True
                )
                self._thread.start()
            return asyncio.run_coroutine_threadsafe(make(), self._loop)

    def close(self) -> None:
        """Cancel what runs on the loop, wait for it to wind down, stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        # One grace for both steps: a loop a judge blocks answers neither, and its daemon
        # thread is left behind rather than waited for twice. A loop that answers (late, on
        # a busy machine) is always given the moment it needs to stop, and is closed.
        deadline = time.monotonic() + CLOSE_GRACE_S
        cancelling = asyncio.run_coroutine_threadsafe(_cancel_tasks(), loop)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            cancelling.result(CLOSE_GRACE_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(max(STOP_GRACE_S, deadline - time.monotonic()))
        if not thread.is_alive():
            loop.close()


async def _cancel_tasks() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """Run the loop until it is stopped. A task that raises SystemExit or KeyboardInterrupt
    (asyncio lets those out of ``run_forever``) must not end the loop every other task and
    every later caller waits on: the loop serves on."""
    while True:
        try:
            loop.run_forever()
            return
        except (KeyboardInterrupt, SystemExit):
            continue
