"""Batched delivery off the test's thread."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchWriter(Generic[T]):
    """Hands items to ``deliver`` in batches from one background thread, never one call per
    item.

    ``put`` is a lock-free append: the thread wakes every ``linger`` seconds and takes what
    has accumulated, at most ``max_batch`` items per call. The tests' thread never waits on a
    lock, never wakes the writer, and never waits for a slow store. The queue is bounded: past
    ``max_queue`` items ``put`` waits for the thread rather than dropping anything.
    """

    def __init__(
        self,
        deliver: Callable[[list[T]], None],
        *,
        max_batch: int = 2000,
        linger: float = 0.5,
        max_queue: int = 20_000,
        name: str = "evalrows-writer",
    ) -> None:
        self._deliver = deliver
        self._max_batch = max_batch
        self._linger = linger
        self._max_queue = max_queue
        self._items: deque[T] = deque()
        self._closing = threading.Event()
        self._closed = False
        self.crash: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> None:
        if self._closed:
            raise RuntimeError("the writer is closed")
        while len(self._items) >= self._max_queue and self._thread.is_alive():
            time.sleep(self._linger / 10)  # the store is behind: wait, never drop
        self._items.append(item)

    def close(self) -> None:
        """Deliver everything queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._thread.join()
        self._drain()  # what a thread that died left behind

    def _run(self) -> None:
        while True:
            # Waits the linger out, or less when closing.
            closing = self._closing.wait(self._linger)
            self._drain(everything=closing)
            if closing:
                return

    def _drain(self, *, everything: bool = True) -> None:
        """Deliver what is queued. While running, only what was there on waking: items
        that arrive during a slow delivery wait for the next wake, so batches stay large
        instead of shrinking to the few rows each delivery lets in."""
        items = self._items
        waiting = len(items)
        while items and (everything or waiting > 0):
            size = min(len(items), self._max_batch) if everything else min(waiting, self._max_batch)
            waiting -= size
            batch = [items.popleft() for _ in range(size)]
            try:
                self._deliver(batch)
            except BaseException as exc:  # deliver reports its own failures; this is a bug
                self.crash = exc
