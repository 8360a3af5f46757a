"""One judge's call, from its evaluation's start to its end: what every way of running a judge
shares, and ``run_async`` for a judge awaited in the caller's own event loop.

An evaluation goes pending -> in_progress (``started_at``) -> success or failure
(``finished_at``). A judge that raises, returns something that is not a judgment, or runs past
its timeout makes a failure whose ``error`` says so ("ValueError: ...", "timed out after
5 s"); nothing here raises because of a judge.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..core.judge_context import judging
from ..core.judgments import Evaluation, Judgment, as_judgment
from ..core.trace import Trace
from .judges import is_async_judge, judge_id

__all__ = ["CANCELLED", "Job", "describe", "new_evaluation", "run_async", "timed_out"]

CANCELLED = "cancelled"


def new_evaluation(trace: Trace, judge_id: str, *, experiment_id: str = "") -> Evaluation:
    """A pending evaluation of ``trace`` by the judge named ``judge_id``."""
    return Evaluation(
        id=uuid.uuid4().hex,
        experiment_id=experiment_id,
        row_id=trace.row_id,
        trace_id=trace.trace_id,
        version_id=trace.version_id,
        judge_id=judge_id,
        created_at=time.time(),
    )


def timed_out(timeout: float) -> str:
    return f"timed out after {timeout:g} s"


def describe(exc: BaseException) -> str:
    """An exception as an evaluation's error: its type and its message."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def check_limits(concurrency: object, timeout: object) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number >= 1, not {concurrency!r}")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")


def start(evaluation: Evaluation) -> None:
    evaluation.started_at = time.time()
    evaluation.status = "in_progress"


def complete(evaluation: Evaluation, started: float | None, value: Any, error: str | None) -> None:
    """Fill in the result (``value`` as a judgment) or the error, and the latency the judge
    left empty (from ``started``, a ``perf_counter``); the status goes last, so that whoever
    sees it finished sees the rest."""
    judgment = None
    if error is None:
        try:
            judgment = as_judgment(value)
        except Exception as exc:
            error = describe(exc)
    elif isinstance(value, Judgment):
        # A failure that still spent tokens (a model that answered nonsense) keeps them.
        judgment = value
    if judgment is not None and judgment.latency_ms is None and started is not None:
        took = (time.perf_counter() - started) * 1000.0
        judgment = judgment.model_copy(update={"latency_ms": round(took, 3)})
    evaluation.result = judgment
    evaluation.error = error
    evaluation.finished_at = time.time()
    evaluation.status = "success" if error is None else "failure"


def call_sync(judge: Any, trace: Trace) -> Any:
    """A sync judge's answer; a coroutine it gave back is run to its end here."""
    value = judge(trace)
    if inspect.iscoroutine(value):
        value = asyncio.run(value)
    return value


class Job:
    """One judge on one trace, as a runner tracks it until it finishes, exactly once."""

    __slots__ = (
        "abandoned",
        "deadline",
        "done",
        "evaluation",
        "future",
        "judge",
        "on_done",
        "started",
        "thread",
        "trace",
    )

    def __init__(
        self,
        judge: Any,
        trace: Trace,
        evaluation: Evaluation,
        on_done: Callable[[Evaluation], None] | None,
    ) -> None:
        self.judge = judge
        self.trace = trace
        self.evaluation = evaluation
        self.on_done = on_done
        self.future: concurrent.futures.Future[Evaluation] = concurrent.futures.Future()
        self.future.set_running_or_notify_cancel()  # the caller cannot cancel it half-way
        self.started: float | None = None  # perf_counter when the judge started
        self.deadline = math.inf  # monotonic; for sync judges, watched by the pool
        self.done = False
        self.abandoned = False  # a sync judge past its deadline: its thread left the pool
        self.thread: threading.Thread | None = None

    @property
    def is_async(self) -> bool:
        return is_async_judge(self.judge)


async def run_async(
    judge: Any, trace: Trace, *, evaluation: Evaluation | None = None, timeout: float = 60.0
) -> Evaluation:
    """Run ``judge`` on ``trace`` in the running event loop (a sync judge in a daemon thread
    of its own) and give its finished evaluation; a judge's error or timeout fails it."""
    check_limits(1, timeout)
    if evaluation is None:
        evaluation = new_evaluation(trace, judge_id(judge))
    started = time.perf_counter()
    start(evaluation)
    value: Any = None
    error: str | None = None
    marked = judging.set(True)  # wait_for's task copies it: the judge's spans are no row's
    try:
        if is_async_judge(judge):
            value = await asyncio.wait_for(judge(trace), timeout)
        else:
            value = await asyncio.wait_for(_in_daemon_thread(judge, trace), timeout)
    except asyncio.CancelledError:
        complete(evaluation, started, None, CANCELLED)
        raise
    except asyncio.TimeoutError:
        error = timed_out(timeout)
    except Exception as exc:
        error, value = describe(exc), spent_by(exc)
    finally:
        judging.reset(marked)
    complete(evaluation, started, value, error)
    return evaluation


def spent_by(exc: BaseException) -> Judgment | None:
    """What a judge that failed had spent already (see ``JudgeError.spent``)."""
    spent = getattr(exc, "spent", None)
    return spent if isinstance(spent, Judgment) else None


def _in_daemon_thread(judge: Any, trace: Trace) -> asyncio.Future[Any]:
    """A sync judge's call on a daemon thread, as a future of the running loop: a judge
    that hangs never keeps the interpreter from exiting."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, exc: BaseException | None) -> None:
        if future.done():  # timed out meanwhile
            return
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)

    def call() -> None:
        judging.set(True)
        value, error = None, None
        try:
            value = call_sync(judge, trace)
        except Exception as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while the judge ran
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=call, name="evalrows-judge", daemon=True).start()
    return future
