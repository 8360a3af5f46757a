"""Batched delivery off the test's thread."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_STOP = object()


class BatchWriter(Generic[T]):
    """Hands items to ``deliver`` in batches, from one background thread.

    The queue is bounded: when the store falls behind, ``put`` waits rather than dropping
    anything. A batch closes when it has ``max_batch`` items or ``linger`` seconds after its
    first item, so a busy session makes few large transactions, never one per row.
    """

    def __init__(
        self,
        deliver: Callable[[list[T]], None],
        *,
        max_batch: int = 500,
        linger: float = 0.05,
        max_queue: int = 20_000,
        name: str = "evalrows-writer",
    ) -> None:
        self._deliver = deliver
        self._max_batch = max_batch
        self._linger = linger
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self.crash: BaseException | None = None
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> None:
        if self._closed:
            raise RuntimeError("the writer is closed")
        self._queue.put(item)

    def close(self) -> None:
        """Deliver everything queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            # Sleep through the linger instead of waking per item: each wake-up of this
            # thread takes the GIL from the tests' thread.
            time.sleep(self._linger)
            batch: list[T] = [first]  # type: ignore[list-item]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            try:
                self._deliver(batch)
            except BaseException as exc:  # deliver reports its own failures; this is a bug
                self.crash = exc
            if stopping:
                return
