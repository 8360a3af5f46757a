"""Evaluations kept in a store: create one for a stored trace, let it run in the background,
read it, list, filter and page them, wait for one, estimate the cost first.

``TraceEvaluations`` (sync) and ``AsyncTraceEvaluations`` work over any store that keeps
``evaluations``. An evaluation is saved pending when it is created (a store that keeps only
finished ones leaves it out) and saved again when it finishes; until then this client answers
for it from memory, so ``get`` and ``get_many`` see it in progress.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from ..core.judgments import Evaluation, Judgment
from ..core.trace import Trace
from ..errors import EvalrowsError
from ..store.base import Store, UnsupportedError
from .calling import describe, new_evaluation
from .judges import Judges, estimate_of, judges_by_name
from .queries import CostSummary, EvaluationPage, select
from .running import JudgeRunner, judge_traces

__all__ = [
    "AsyncTraceEvaluations",
    "TraceEvaluations",
    "UnknownEvaluationError",
    "UnknownJudgeError",
    "UnknownTraceError",
    "judge_traces",
]


class UnknownJudgeError(EvalrowsError, LookupError):
    """No judge of that name was given to the client."""


class UnknownTraceError(EvalrowsError, LookupError):
    """No row version of the experiment has that trace id."""


class UnknownEvaluationError(EvalrowsError, LookupError):
    """No evaluation of the experiment has that id."""


def _snapshot(evaluation: Evaluation) -> Evaluation:
    """A copy that does not change under the caller; never "in progress" with a result
    half-written (the runner writes the status last)."""
    copy = evaluation.model_copy()
    if not copy.finished:
        copy.result, copy.error, copy.finished_at = None, None, None
    return copy


def _check_seconds(what: str, value: object, *, zero: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{what} must be a number of seconds {bound}, not {value!r}")
    return float(value)


class TraceEvaluations:
    """Evaluations of one experiment's traces, by the judges given (a list, or names to
    judges), run in the background at most ``concurrency`` at a time for at most
    ``timeout`` seconds each. Close it (or use it as a context manager): what is still
    running is then saved as failed, "cancelled"."""

    def __init__(
        self,
        store: Store,
        experiment: str,
        *,
        project: str | None = None,
        judges: Judges = (),
        concurrency: int = 8,
        timeout: float = 60.0,
    ) -> None:
        if not store.evaluations:
            shown = store.display_url or type(store).__name__
            raise UnsupportedError(f"{shown} keeps no evaluations")
        self.judges = judges_by_name(judges)
        self.store = store
        self.experiment = store.get_experiment(experiment, project)
        self.save_errors: list[str] = []  # saves that failed; those evaluations stay here
        self._runner = JudgeRunner(concurrency=concurrency, timeout=timeout)
        self._lock = threading.Lock()
        self._live: dict[str, Evaluation] = {}  # created here, not saved finished yet
        self._futures: dict[str, concurrent.futures.Future[Evaluation]] = {}

    # -- creating ------------------------------------------------------------------------

    def judge(self, judge_id: str) -> Any:
        """The judge of that name; ``UnknownJudgeError`` naming those known."""
        found = self.judges.get(judge_id) if isinstance(judge_id, str) else None
        if found is None:
            known = ", ".join(sorted(self.judges)) or "none (give judges=[...])"
            raise UnknownJudgeError(f"no judge named {judge_id!r}; known judges: {known}")
        return found

    def trace(self, trace_id: str) -> Trace:
        """The trace (a row version and its spans) of that id; ``UnknownTraceError``."""
        if not isinstance(trace_id, str) or not trace_id:
            raise ValueError(f"a trace id must be a non-empty string, not {trace_id!r}")
        found = self.store.find_trace(self.experiment.id, trace_id)
        if found is None:
            raise UnknownTraceError(
                f"no row of experiment {self.experiment.name!r} has trace {trace_id!r}"
            )
        return found

    def create(self, trace_id: str, judge_id: str) -> Evaluation:
        """Start judging the trace with the judge; the evaluation as it is now (pending or
        in progress). It is saved pending, and saved again when it finishes."""
        judge = self.judge(judge_id)
        trace = self.trace(trace_id)
        evaluation = new_evaluation(trace, judge_id, experiment_id=self.experiment.id)
        self.store.save_evaluations(self.experiment.id, [evaluation])
        with self._lock:
            self._live[evaluation.id] = evaluation
        future = self._runner.submit(judge, trace, evaluation=evaluation, on_done=self._save)
        with self._lock:
            self._futures[evaluation.id] = future
        return _snapshot(evaluation)

    def _save(self, evaluation: Evaluation) -> None:
        try:
            self.store.save_evaluations(self.experiment.id, [evaluation])
        except Exception as exc:  # kept here, and said in save_errors
            self.save_errors.append(f"evaluation {evaluation.id}: {describe(exc)}")
            return
        with self._lock:
            self._live.pop(evaluation.id, None)

    # -- reading -------------------------------------------------------------------------

    def get(self, id: str) -> Evaluation:
        """The evaluation of that id, as it is now; ``UnknownEvaluationError``."""
        with self._lock:
            live = self._live.get(id)
        if live is not None:
            return _snapshot(live)
        found = self.store.get_evaluation(self.experiment.id, id)
        if found is None:
            raise UnknownEvaluationError(
                f"no evaluation {id!r} in experiment {self.experiment.name!r}"
            )
        return found

    def get_many(
        self,
        page: int = 1,
        page_size: int = 20,
        judge_id: str | None = None,
        trace_id: str | None = None,
        outcome: str | None = None,
        time_range: str | None = None,
        search: str | None = None,
        sort_by: str = "created_at",
        sort_order: str = "desc",
        *,
        row_id: str | None = None,
        status: str | None = None,
    ) -> EvaluationPage:
        """A page of the experiment's evaluations: those saved and those running here,
        filtered and ordered (see ``queries.select``)."""
        select(
            [],
            page=page,
            page_size=page_size,
            outcome=outcome,
            time_range=time_range,
            sort_by=sort_by,
            sort_order=sort_order,
            status=status,
            search=search,
            judge_id=judge_id,
            trace_id=trace_id,
            row_id=row_id,
        )  # arguments first
        found = {each.id: each for each in self.store.list_evaluations(self.experiment.id)}
        with self._lock:
            live = list(self._live.values())
        found.update((each.id, _snapshot(each)) for each in live)
        return select(
            found.values(),
            page=page,
            page_size=page_size,
            judge_id=judge_id,
            trace_id=trace_id,
            row_id=row_id,
            status=status,
            outcome=outcome,
            time_range=time_range,
            search=search,
            sort_by=sort_by,
            sort_order=sort_order,
        )

    def get_results(self, id: str) -> Judgment | None:
        """The judgment once the evaluation has succeeded; None until then (and for a
        failed one: see its ``error``)."""
        evaluation = self.get(id)
        return evaluation.result if evaluation.status == "success" else None

    def wait_for_completion(
        self, id: str, interval_seconds: float = 3, timeout_seconds: float = 300
    ) -> Evaluation:
        """The evaluation once finished, looked at every ``interval_seconds`` (at once
        when it runs here); ``TimeoutError`` after ``timeout_seconds``."""
        interval = _check_seconds("interval_seconds", interval_seconds, zero=False)
        timeout = _check_seconds("timeout_seconds", timeout_seconds, zero=True)
        deadline = time.monotonic() + timeout
        future = self.future_of(id)
        while True:
            evaluation = self.get(id)
            if evaluation.finished:
                return evaluation
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"evaluation {id} is still {evaluation.status} after {timeout:g} s"
                )
            if future is not None:
                concurrent.futures.wait([future], timeout=min(interval, remaining))
            else:
                time.sleep(min(interval, remaining))

    def future_of(self, id: str) -> concurrent.futures.Future[Evaluation] | None:
        """The future of an evaluation this client created, None for others."""
        with self._lock:
            return self._futures.get(id)

    def estimate_cost(self, trace_ids: Iterable[str], judge_id: str) -> CostSummary:
        """What the judge would cost over the traces, from its ``estimate``: no judge is
        run and no model is asked."""
        judge = self.judge(judge_id)
        if isinstance(trace_ids, str):
            raise ValueError("trace_ids must be a list of trace ids, not one string")
        wanted = list(dict.fromkeys(trace_ids))
        latest = {trace.trace_id: trace for trace in self.store.latest_traces(self.experiment.id)}
        summary = CostSummary(trace_count=len(wanted))
        for trace_id in wanted:
            trace = latest.get(trace_id) if isinstance(trace_id, str) else None
            estimate = estimate_of(judge, trace if trace is not None else self.trace(trace_id))
            summary.input_tokens += estimate.input_tokens
            summary.output_tokens += estimate.output_tokens
            summary.estimated_cost += estimate.estimated_cost
            summary.model = summary.model or estimate.model
        return summary

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the judges still running (saved as failed, "cancelled"); the store stays
        open. Idempotent."""
        self._runner.close()

    def __enter__(self) -> TraceEvaluations:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncTraceEvaluations:
    """``TraceEvaluations`` for async code: the same methods, awaited. The store is read
    and written in a worker thread, so the event loop never waits on it."""

    def __init__(
        self,
        store: Store,
        experiment: str,
        *,
        project: str | None = None,
        judges: Judges = (),
        concurrency: int = 8,
        timeout: float = 60.0,
    ) -> None:
        self.sync = TraceEvaluations(
            store,
            experiment,
            project=project,
            judges=judges,
            concurrency=concurrency,
            timeout=timeout,
        )

    async def create(self, trace_id: str, judge_id: str) -> Evaluation:
        return await asyncio.to_thread(self.sync.create, trace_id, judge_id)

    async def get(self, id: str) -> Evaluation:
        return await asyncio.to_thread(self.sync.get, id)

    async def get_many(self, page: int = 1, page_size: int = 20, **filters: Any) -> EvaluationPage:
        return await asyncio.to_thread(self.sync.get_many, page, page_size, **filters)

    async def get_results(self, id: str) -> Judgment | None:
        return await asyncio.to_thread(self.sync.get_results, id)

    async def wait_for_completion(
        self, id: str, interval_seconds: float = 3, timeout_seconds: float = 300
    ) -> Evaluation:
        interval = _check_seconds("interval_seconds", interval_seconds, zero=False)
        timeout = _check_seconds("timeout_seconds", timeout_seconds, zero=True)
        deadline = time.monotonic() + timeout
        future = self.sync.future_of(id)
        while True:
            evaluation = await self.get(id)
            if evaluation.finished:
                return evaluation
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"evaluation {id} is still {evaluation.status} after {timeout:g} s"
                )
            pause = time.monotonic() + min(interval, remaining)
            # One running here is looked at again as soon as it finishes.
            while time.monotonic() < pause and not (future is not None and future.done()):
                await asyncio.sleep(min(0.02 if future is not None else interval, remaining))

    async def estimate_cost(self, trace_ids: Iterable[str], judge_id: str) -> CostSummary:
        ids = trace_ids if isinstance(trace_ids, str) else list(trace_ids)  # one string: said
        return await asyncio.to_thread(self.sync.estimate_cost, ids, judge_id)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncTraceEvaluations:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
