"""Where judges run: a bounded pool of daemon threads with a watchdog for sync judges, and one
event loop in a daemon thread for async ones.

A sync judge cannot be stopped. Past its deadline the watchdog hands it to ``expire`` (its
evaluation fails) and its thread leaves the pool, abandoned: a daemon thread, so it never keeps
the interpreter from exiting, while a new thread takes its place.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from ..core.judge_context import judging
from ..core.loop_thread import LoopThread
from .calling import Job

__all__ = ["DaemonPool", "LoopThread"]

from ..core.loop_thread import CLOSE_GRACE_S


class DaemonPool:
    """At most ``size`` daemon threads that call ``execute`` on queued jobs, and a watchdog
    that calls ``expire`` on a watched job still running ``timeout`` seconds after it began."""

    def __init__(
        self,
        size: int,
        timeout: float,
        execute: Callable[[Job], None],
        expire: Callable[[Job], None],
    ) -> None:
        self.size = size
        self.timeout = timeout
        self._execute = execute
        self._expire = expire
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._deadlines = threading.Condition(self._lock)
        self._queue: deque[Job] = deque()
        self._workers: set[threading.Thread] = set()  # the pool's, abandoned ones left out
        self._busy: set[threading.Thread] = set()
        self._idle = 0
        self._watched: set[Job] = set()
        self._watchdog: threading.Thread | None = None
        self._closed = False

    def put(self, job: Job) -> bool:
        """Queue the job for the pool; False once the pool is closed."""
        with self._lock:
            if self._closed:
                return False
            self._queue.append(job)
            if len(self._queue) > self._idle and len(self._workers) < self.size:
                self._start_worker()
            self._has_work.notify()
        return True

    def run_alone(self, job: Job) -> None:
        """Run the job on a daemon thread of its own, whatever the pool is busy with."""
        name = f"evalrows-judge-{job.evaluation.judge_id}"
        threading.Thread(target=self._alone, args=(job,), name=name, daemon=True).start()

    def watch(self, job: Job) -> None:
        """Start the job's deadline (its judge is starting)."""
        with self._lock:
            job.deadline = time.monotonic() + self.timeout
            self._watched.add(job)
            if self._watchdog is None and not self._closed:
                self._watchdog = threading.Thread(
                    target=self._watch, name="evalrows-judge-deadlines", daemon=True
                )
                self._watchdog.start()
            self._deadlines.notify()

    def unwatch(self, job: Job) -> None:
        with self._lock:
            self._watched.discard(job)

    def close(self) -> None:
        """Start no more jobs; wait a little for idle threads and the watchdog to stop (not
        for busy ones: their jobs are the caller's to finish)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            idle = [worker for worker in self._workers if worker not in self._busy]
            if self._watchdog is not None:
                idle.append(self._watchdog)
            self._has_work.notify_all()
            self._deadlines.notify_all()
        for thread in idle:
            thread.join(CLOSE_GRACE_S)

    # -- the threads -----------------------------------------------------------------------

    def _start_worker(self) -> None:
        """Under the lock: one more thread in the pool."""
        worker = threading.Thread(target=self._work, name="evalrows-judge", daemon=True)
        self._workers.add(worker)
        worker.start()

    def _work(self) -> None:
        judging.set(True)  # the spans a judge starts belong to no row
        me = threading.current_thread()
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._has_work.wait()
                    self._idle -= 1
                if self._closed:
                    self._workers.discard(me)
                    return
                job = self._queue.popleft()
                job.thread = me
                self._busy.add(me)
            try:
                self._execute(job)
            finally:
                with self._lock:
                    self._busy.discard(me)
                    self._watched.discard(job)
                    abandoned = job.abandoned
            if abandoned:  # its place in the pool went to a new thread
                return

    def _alone(self, job: Job) -> None:
        judging.set(True)
        job.thread = threading.current_thread()
        try:
            self._execute(job)
        finally:
            self.unwatch(job)

    def _watch(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                expired = [job for job in self._watched if job.deadline <= now]
                if not expired:
                    soonest = min((job.deadline for job in self._watched), default=math.inf)
                    self._deadlines.wait(None if soonest == math.inf else soonest - now)
                    continue
                for job in expired:
                    self._watched.discard(job)
                    job.abandoned = True
                    if job.thread is not None:
                        self._workers.discard(job.thread)
                while self._queue and len(self._workers) < self.size:
                    self._start_worker()
                self._lock.release()
                try:
                    for job in expired:
                        self._expire(job)
                finally:
                    self._lock.acquire()
