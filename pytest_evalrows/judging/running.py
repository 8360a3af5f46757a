"""Judges run in the background: ``JudgeRunner``.

Sync judges run on a bounded pool of daemon threads, async ones on one event loop in a daemon
thread (``pool``); each has ``timeout`` seconds. Every evaluation finishes, exactly once: with
the judge's judgment, or failed with its error, its timeout, or "cancelled" by ``close``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from ..core.judge_context import judging
from ..core.judgments import Evaluation
from ..core.trace import Trace
from .calling import (
    CANCELLED,
    Job,
    call_sync,
    check_limits,
    complete,
    describe,
    new_evaluation,
    run_async,
    spent_by,
    start,
    timed_out,
)
from .judges import Judges, judge_id, judges_by_name
from .pool import DaemonPool, LoopThread

__all__ = ["JudgeRunner", "judge_traces", "new_evaluation", "run_async"]

CLOSED = f"{CANCELLED}: the judge runner is closed"


class JudgeRunner:
    """Runs judges in the background, at most ``concurrency`` sync and ``concurrency`` async
    judges at a time, each for at most ``timeout`` seconds.

    The evaluation a job is given (a new pending one by default) is updated in place as it
    runs, its status last, and is what the future holds. ``on_done`` is called with it once
    it has finished, before the future resolves and before ``wait`` counts it done; an
    exception from ``on_done`` is kept in ``callback_errors``, not raised.
    """

    def __init__(self, *, concurrency: int = 8, timeout: float = 60.0) -> None:
        check_limits(concurrency, timeout)
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.callback_errors: list[str] = []
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)
        self._unfinished: set[Job] = set()
        self._closed = False
        self._pool = DaemonPool(concurrency, self.timeout, self._execute, self._expire)
        self._loop = LoopThread(concurrency)

    # -- submitting ------------------------------------------------------------------------

    def submit(
        self,
        judge: Any,
        trace: Trace,
        *,
        evaluation: Evaluation | None = None,
        on_done: Callable[[Evaluation], None] | None = None,
    ) -> concurrent.futures.Future[Evaluation]:
        """Run ``judge`` on ``trace`` in the background; the future gives the finished
        evaluation, never an exception. Without ``evaluation`` the judge needs a name
        (``judge_id``), or this raises ``TypeError``."""
        job = self._job(judge, trace, evaluation, on_done)
        if not job.done:
            accepted = self._submit_async(job) if job.is_async else self._pool.put(job)
            if not accepted:
                self._finish(job, error=CLOSED)
        return job.future

    def run(self, judge: Any, trace: Trace, *, evaluation: Evaluation | None = None) -> Evaluation:
        """Run ``judge`` on ``trace`` and wait for its finished evaluation. Works from any
        thread, whatever the pool is busy with: the judge gets a thread of its own."""
        job = self._job(judge, trace, evaluation, None)
        if not job.done:
            # A thread of its own, async judges too (run there to the end): the caller waits
            # behind no judge of the pool or the loop, and the deadline starts now.
            self._pool.run_alone(job)
        return job.future.result()

    def _job(
        self,
        judge: Any,
        trace: Trace,
        evaluation: Evaluation | None,
        on_done: Callable[[Evaluation], None] | None,
    ) -> Job:
        if evaluation is None:
            evaluation = new_evaluation(trace, judge_id(judge))
        job = Job(judge, trace, evaluation, on_done)
        with self._lock:
            closed = self._closed
            if not closed:
                self._unfinished.add(job)
        if closed:
            self._finish(job, error=CLOSED)
        return job

    # -- running -----------------------------------------------------------------------------

    def _execute(self, job: Job) -> None:
        """On a pool thread: the sync judge's call, under its deadline."""
        if not self._begin(job):
            return
        self._pool.watch(job)
        try:
            value = call_sync(job.judge, job.trace)
        except Exception as exc:
            self._finish(job, error=describe(exc), value=spent_by(exc))
        else:
            self._finish(job, value=value)

    def _expire(self, job: Job) -> None:
        self._finish(job, error=timed_out(self.timeout))

    def _submit_async(self, job: Job) -> bool:
        return self._loop.submit(lambda: self._run_on_loop(job)) is not None

    async def _run_on_loop(self, job: Job) -> None:
        judging.set(True)  # this task's own context: the spans its judge starts are no row's
        try:
            async with self._loop.slots:
                if not self._begin(job):
                    return
                # The watchdog too: a judge that blocks the loop (a sync call inside an
                # async def) never lets wait_for fire.
                self._pool.watch(job)
                value = await asyncio.wait_for(job.judge(job.trace), self.timeout)
        except asyncio.CancelledError:
            self._finish(job, error=CANCELLED)
        except asyncio.TimeoutError:
            self._finish(job, error=timed_out(self.timeout))
        except Exception as exc:
            self._finish(job, error=describe(exc), value=spent_by(exc))
        else:
            self._finish(job, value=value)
        finally:
            self._pool.unwatch(job)

    def _begin(self, job: Job) -> bool:
        """Mark the job in progress; False when it has already finished (closed)."""
        with self._lock:
            if job.done:
                return False
            job.started = time.perf_counter()
            start(job.evaluation)
        return True

    def _finish(self, job: Job, *, value: Any = None, error: str | None = None) -> None:
        """Finish the job once: the judge's return, its deadline and close() may race."""
        with self._lock:
            if job.done:
                return
            job.done = True
        complete(job.evaluation, job.started, value, error)
        if job.on_done is not None:
            try:
                job.on_done(job.evaluation)
            except Exception as exc:
                self.callback_errors.append(describe(exc))
        job.future.set_result(job.evaluation)
        with self._lock:
            self._unfinished.discard(job)
            if not self._unfinished:
                self._all_done.notify_all()

    # -- waiting and closing -------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Evaluations submitted (or running through ``run``) and not finished yet."""
        with self._lock:
            return len(self._unfinished)

    def wait(
        self,
        timeout: float | None = None,
        *,
        progress: Callable[[int], None] | None = None,
        interval: float = 1.0,
    ) -> bool:
        """Wait until every evaluation has finished (True) or ``timeout`` seconds have
        passed (False). ``progress`` is called with the number still outstanding at once,
        then about every ``interval`` seconds while some are."""
        if not interval > 0:
            raise ValueError(f"interval must be > 0, not {interval!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        next_report = time.monotonic()
        with self._lock:
            while self._unfinished:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                if progress is not None and now >= next_report:
                    count = len(self._unfinished)
                    next_report = now + interval
                    self._lock.release()
                    try:
                        progress(count)
                    finally:
                        self._lock.acquire()
                    continue
                waits = [] if deadline is None else [deadline - now]
                if progress is not None:
                    waits.append(next_report - now)
                self._all_done.wait(min(waits) if waits else None)
        return True

    def close(self) -> None:
        """Stop: what has not finished fails as "cancelled". Async judges are cancelled;
        sync judges still running are abandoned, not waited for. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._loop.close()
        self._pool.close()
        with self._lock:
            unfinished = list(self._unfinished)
        for job in unfinished:
            self._finish(job, error=CANCELLED)

    def __enter__(self) -> JudgeRunner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def judge_traces(
    traces: Iterable[Trace],
    judges: Judges,
    *,
    concurrency: int = 8,
    timeout: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
    experiment_id: str = "",
) -> list[Evaluation]:
    """Every judge on every trace; the finished evaluations, trace by trace and judge by
    judge in the order given (nothing is saved). ``progress(finished, total)`` is called in
    the caller's thread at the start and as each evaluation finishes."""
    named = judges_by_name(judges)
    with JudgeRunner(concurrency=concurrency, timeout=timeout) as runner:
        futures = [
            runner.submit(
                judge, trace, evaluation=new_evaluation(trace, name, experiment_id=experiment_id)
            )
            for trace in traces
            for name, judge in named.items()
        ]
        if progress is not None:
            progress(0, len(futures))
            for finished, _ in enumerate(concurrent.futures.as_completed(futures), 1):
                progress(finished, len(futures))
        return [future.result() for future in futures]
