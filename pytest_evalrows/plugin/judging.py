"""Judges in the suite: ``@pytest.mark.eval(judges=[...])`` on every finished row, and
``eval_row.judge`` inside a test; their evaluations saved at the end of the session.

Imported only where judges are used: a session without any starts no judge thread and
loads none of this (nor pydantic).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import pytest

from ..core import ids
from ..core.judgments import Evaluation, Judgment
from ..core.models import Metrics, RowVersion, SpanRecord
from ..core.records import RowDoc, SpanDoc
from ..core.row import UNSET, JudgeFailedError, RowDraft
from ..core.trace import Trace
from ..core.values import json_value, storable_text
from ..delivery.delivery import Delivery
from ..delivery.totals import Totals
from ..judging.judges import judge_id
from ..judging.running import JudgeRunner, new_evaluation
from . import building
from .settings import Settings

# Evaluations spooled in one entry.
_CHUNK = 500
# A new progress line when the count changed, or after this long without one.
_QUIET_SECONDS = 10.0

Judges = tuple[tuple[str, Any], ...]


def checked_judges(nodeid: str, judges: object) -> Judges:
    """The marker's ``judges=`` as (judge id, judge) pairs; a ``pytest.UsageError`` naming
    the test for anything that cannot be judged with."""
    if not isinstance(judges, (list, tuple)):
        raise pytest.UsageError(
            f"evalrows: @pytest.mark.eval(judges=...) of {nodeid} takes a list or tuple of "
            f"judges, not {type(judges).__name__}"
        )
    found: dict[str, Any] = {}
    for judge in judges:
        try:
            name = judge_id(judge)
        except TypeError as exc:
            raise pytest.UsageError(f"evalrows: a judge of {nodeid}: {exc}") from None
        if name in found:
            raise pytest.UsageError(
                f"evalrows: {nodeid} has two judges named {name!r}; each judge's scores show "
                f"on the row as judge:<name>, so give them distinct names"
            )
        found[name] = judge
    return tuple(found.items())


def trace_of(row: RowDoc, spans: Iterable[SpanDoc]) -> Trace:
    """A row as built for the store, and the spans of its trace, as a judge sees them."""
    trace_id = row["root_span_id"]
    return Trace(
        RowVersion.model_validate(row),
        [SpanRecord.model_validate(span) for span in spans if span["root_span_id"] == trace_id],
    )


class SessionJudging:
    """The judges of one process's rows: one runner for the session, made by the first row
    with judges (or the first ``eval_row.judge``), and every evaluation until the end."""

    def __init__(
        self,
        config: pytest.Config,
        settings: Settings,
        *,
        attempt_id: str,
        experiment: str,
        totals: Totals,
        row_fields_hook: bool,
    ) -> None:
        self.config = config
        self.attempt_id = attempt_id
        self.experiment_name = experiment
        self.totals = totals
        self.row_fields_hook = row_fields_hook
        self.wait_seconds = settings.judge_wait
        self.runner = JudgeRunner(
            concurrency=settings.judge_concurrency, timeout=settings.judge_timeout
        )
        self.submitted: list[tuple[Evaluation, Future[Evaluation]]] = []
        # eval_row.judge's evaluations by the trace (execution) they judged: a rerun
        # plugin's repeated execution is no row version, and its judgments go with it.
        self.in_test: dict[str, list[Evaluation]] = {}
        self._lock = threading.Lock()  # concurrent cases may judge at once

    # -- while tests run -----------------------------------------------------------------

    def judge_row(self, judges: Judges, row: RowDoc, spans: Sequence[SpanDoc]) -> None:
        """Submit the finished row's judges; they run while later tests do. Never raises:
        a row that cannot be judged is said in the report."""
        try:
            trace = trace_of(row, spans)
            for name, judge in judges:
                evaluation = new_evaluation(trace, name)
                self.submitted.append(
                    (evaluation, self.runner.submit(judge, trace, evaluation=evaluation))
                )
        except Exception as exc:
            self.totals.errors.append(f"judging row {row.get('row_id')!r} failed: {exc!r}")

    def judge_now(self, judge: Any, name: str, draft: RowDraft) -> Evaluation:
        """``eval_row.judge`` on a recorded row: its trace so far, judged in this thread."""
        trace = self.trace_so_far(draft)
        evaluation = self.runner.run(judge, trace, evaluation=new_evaluation(trace, name))
        with self._lock:
            self.in_test.setdefault(trace.trace_id, []).append(evaluation)
        return evaluation

    def trace_so_far(self, draft: RowDraft) -> Trace:
        """The running execution as its row would be now (status ``passed`` for now), with
        the spans captured so far, the row-fields hook applied (it may redact)."""
        end = time.time()
        fields = building.row_fields(draft, "passed", self.attempt_id)
        if self.row_fields_hook:
            self.config.hook.pytest_evalrows_row_fields(item=draft.item, fields=fields)
        row = building.row_version(
            draft, status="passed", end=end, attempt_id=self.attempt_id, fields=fields
        )
        root = building.root_span(
            draft,
            status="passed",
            end=end,
            attempt_id=self.attempt_id,
            experiment=self.experiment_name,
        )
        return trace_of(row, [root, *list(draft.spans)])

    def forget(self, draft: RowDraft) -> None:
        """An execution a rerun plugin repeats: its in-test judgments are of no version."""
        with self._lock:
            self.in_test.pop(ids.trace_id_hex(draft.trace_id), None)

    # -- at the end ----------------------------------------------------------------------

    def finish(self, delivery: Delivery) -> None:
        """Wait for the judgments still running (at most ``--eval-judge-wait``), count them,
        and save them all, or spool them when the store cannot take them now."""
        try:
            finished = self._wait()
            counts = self.totals.judgments
            for evaluation in finished:
                result = evaluation.result
                counts.add(
                    evaluation.judge_id,
                    evaluation.row_id,
                    error=None if evaluation.status == "success" else evaluation.error or "failed",
                    passed=result.passed if result is not None else None,
                    score=evaluation.row_score,
                )
            # Saved (or spooled) before the runner is closed: a second Ctrl-C while it
            # cancels what still runs loses nothing.
            self._save(delivery, finished)
        finally:
            # A second Ctrl-C here leaves only the judges still running behind.
            with contextlib.suppress(KeyboardInterrupt):
                self.runner.close()

    def _wait(self) -> list[Evaluation]:
        """Every evaluation, finished: those still running when the wait ran out fail."""
        total = len(self.submitted)
        why = f"it waited {self.wait_seconds:g} s: --eval-judge-wait"
        try:
            if self.runner.outstanding:
                self.runner.wait(self.wait_seconds, progress=self._progress(total), interval=1.0)
        except KeyboardInterrupt:  # stop waiting; what finished is still saved
            why = "the wait was interrupted"
        ended = time.time()
        finished: list[Evaluation] = []
        for evaluation, future in self.submitted:
            if future.done():
                finished.append(future.result())
            else:  # a copy: close() is about to cancel the one still running
                finished.append(
                    evaluation.model_copy(
                        update={
                            "status": "failure",
                            "result": None,
                            "finished_at": ended,
                            "error": f"not finished when the session ended ({why})",
                        }
                    )
                )
        with self._lock:
            for evaluations in self.in_test.values():
                finished.extend(evaluations)
        return finished

    def _progress(self, total: int) -> Callable[[int], None]:
        """A line on the terminal while the session waits, when something changed (or now
        and then): nothing on an xdist worker, whose output nobody sees."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        last: list[Any] = [None, 0.0]

        def progress(outstanding: int) -> None:
            now = time.monotonic()
            if reporter is None or hasattr(self.config, "workerinput"):
                return
            if outstanding == last[0] and now - last[1] < _QUIET_SECONDS:
                return
            last[:] = [outstanding, now]
            reporter.write_line(
                f"evalrows: waiting for {outstanding} judgments ({total - outstanding} done)..."
            )

        return progress

    def _save(self, delivery: Delivery, evaluations: list[Evaluation]) -> None:
        counts = self.totals.judgments
        if not evaluations:
            return
        store, experiment = delivery.store, delivery.experiment
        if store is not None and not store.evaluations:
            counts.unsaved += len(evaluations)
            counts.unsaved_why = f"{delivery.store_display} keeps no evaluations"
            return
        pending = list(evaluations)
        if store is not None and experiment is not None and not delivery.store_down:
            for evaluation in evaluations:
                evaluation.experiment_id = experiment.id
            try:
                # In one call: a store batches its own writes, and an HTTP store reads the
                # experiment once per call.
                store.save_evaluations(experiment.id, pending)
                counts.saved += len(pending)
                pending = []
            except Exception as exc:  # a StoreError, or a store's bug: kept, said
                self.totals.errors.append(f"saving judgments failed: {exc}")
        for start in range(0, len(pending), _CHUNK):
            chunk = pending[start : start + _CHUNK]
            spooled = None
            if delivery.spool is not None:
                spooled = delivery.spool.add_evaluations(
                    [evaluation.model_dump(mode="json") for evaluation in chunk]
                )
            if spooled is None:
                counts.unsaved += len(chunk)
                counts.unsaved_why = "the store could not take them, nor the spool keep them"
            else:
                counts.spooled += len(chunk)


def judge_in_test(
    judge: Any,
    *,
    draft: RowDraft | None,
    item: Any,
    kept: list[tuple[Any, ...]] | None,
    session: SessionJudging | None,
    timeout: float,
) -> Judgment:
    """``eval_row.judge``: the judgment, or ``JudgeFailedError`` saying why there is none."""
    __tracebackhide__ = True
    try:
        name = judge_id(judge)
    except TypeError as exc:
        raise JudgeFailedError(str(exc)) from None
    if draft is not None and session is not None:
        evaluation = session.judge_now(judge, name, draft)
    else:  # not recording: what the test logged through its handle, and no spans
        trace = Trace(_unrecorded_row(item, kept or []))
        with JudgeRunner(concurrency=1, timeout=timeout) as runner:
            evaluation = runner.run(judge, trace, evaluation=new_evaluation(trace, name))
    if evaluation.status != "success" or evaluation.result is None:
        raise JudgeFailedError(f"judge {name!r} failed: {evaluation.error}")
    return evaluation.result


def _unrecorded_row(item: Any, kept: list[tuple[Any, ...]]) -> RowVersion:
    """The row a test that is not recorded would have: what it logged (merged as
    ``EvalRow.log`` merges it when recording), its parameters as its input, status
    ``passed`` for now."""
    now = time.time()
    callspec = getattr(item, "callspec", None)
    nodeid = getattr(item, "nodeid", "")
    fields: dict[str, Any] = {
        "input": dict(callspec.params) if callspec is not None else {},
        "output": None,
        "expected": None,
    }
    scores: dict[str, float] = {}
    metadata: dict[str, Any] = {}
    tags: list[str] = []
    for output, expected, input, logged_scores, logged_metadata, logged_tags in kept:
        for name, value in (("output", output), ("expected", expected), ("input", input)):
            if value is not UNSET:
                fields[name] = value
        scores.update((storable_text(name), value) for name, value in logged_scores.items())
        if logged_metadata:
            safe, _ = json_value(logged_metadata)
            metadata.update(safe if isinstance(safe, dict) else {"metadata_repr": safe})
        tags.extend(tag for tag in logged_tags if tag not in tags)
    return RowVersion(
        row_id=nodeid,
        version_id="",
        nodeid=nodeid,
        attempt_id="",
        execution=1,
        status="passed",
        **{name: json_value(value)[0] for name, value in fields.items()},
        scores=scores,
        metadata=metadata,
        tags=tags,
        metrics=Metrics(start=now, end=now, duration=0.0),
        root_span_id="",
        span_id="",
    )
