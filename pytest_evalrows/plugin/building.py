"""Turning a finished execution into what is stored: the row version and its root span."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from ..core import ids, rows
from ..core.records import ErrorInfo, RowDoc, SpanDoc, Status
from ..core.row import UNSET, RowDraft, RowPlan
from ..core.values import storable_text

_TRACEBACK_CHARS = 4_000
_MESSAGE_CHARS = 2_000


def row_fields(draft: RowDraft, status: Status, attempt_id: str) -> dict[str, Any]:
    """The fields a ``pytest_evalrows_row_fields`` hook may change."""
    plan = draft.plan
    scores = dict(draft.scores)
    if status in ("passed", "failed"):
        scores.setdefault("pass", 1.0 if status == "passed" else 0.0)
    metadata: dict[str, Any] = {
        **draft.metadata,
        **system_metadata(plan, attempt_id, draft.execution),
    }
    truncated = dict(draft.truncated)
    if plan.input_truncated is not None and draft.input is UNSET:
        truncated["input"] = plan.input_truncated
    if truncated:
        metadata["truncated"] = truncated
    return {
        "input": plan.input if draft.input is UNSET else draft.input,
        "output": draft.output,
        "expected": draft.expected,
        "scores": scores,
        "metadata": metadata,
        "tags": list(draft.tags),
    }


def system_metadata(plan: RowPlan, attempt_id: str, execution: int) -> dict[str, Any]:
    return {
        "nodeid": plan.nodeid,
        "attemptId": attempt_id,
        "execution": execution,
        "params_hash": plan.params_hash,
        "markers": plan.markers,
    }


def row_version(
    draft: RowDraft,
    *,
    status: Status,
    end: float,
    attempt_id: str,
    fields: dict[str, Any],
) -> RowDoc:
    metrics: dict[str, Any] = {
        "start": draft.start,
        "end": end,
        "duration": max(0.0, end - draft.start),
    }
    if draft.prompt_tokens or draft.completion_tokens:
        metrics["prompt_tokens"] = draft.prompt_tokens
        metrics["completion_tokens"] = draft.completion_tokens
        metrics["tokens"] = draft.prompt_tokens + draft.completion_tokens
    error = draft.error if status in ("failed", "error") else None
    return {
        "row_id": draft.plan.row_id,
        # One execution, one version id: a redelivered version is a no-op in the store, and
        # so is the error row the xdist controller writes for a crashed worker's execution
        # when the worker's own row of it was delivered first.
        "version_id": ids.version_id(attempt_id, draft.plan.row_id, draft.trace_id),
        "nodeid": draft.plan.nodeid,
        "attempt_id": attempt_id,
        "execution": draft.execution,
        "status": status,
        **fields,
        "error": asdict(error) if error is not None else None,
        "metrics": metrics,
        "root_span_id": ids.trace_id_hex(draft.trace_id),
        "span_id": ids.span_id_hex(draft.span_id),
    }


def root_span(
    draft: RowDraft, *, status: str, end: float, attempt_id: str, experiment: str
) -> SpanDoc:
    """The execution's own span, as ``rows.root_span`` derives it from the draft's fields."""
    item = draft.item
    return rows.root_span(
        row_id=draft.plan.row_id,
        trace_hex=ids.trace_id_hex(draft.trace_id),
        span_hex=ids.span_id_hex(draft.span_id),
        attempt_id=attempt_id,
        execution=draft.execution,
        name=item.name if item is not None else draft.plan.row_id,
        start=draft.start,
        end=end,
        status=status,
        error=draft.error,
        experiment=experiment,
    )


def in_flight(draft: RowDraft) -> dict[str, Any]:
    """What the xdist controller needs to record a row whose worker crashed mid-test."""
    plan = draft.plan
    return {
        "row_id": plan.row_id,
        "case_row_id": plan.case_row_id,  # a trial's case (None: no trial)
        "nodeid": plan.nodeid,
        "input": plan.input,
        "params_hash": plan.params_hash,
        "markers": plan.markers,
        "execution": draft.execution,
        "trace_id": draft.trace_id,
        "span_id": draft.span_id,
        "start": draft.start,
    }


def crashed_row(
    info: dict[str, Any], message: str, end: float, attempt_id: str, experiment: str
) -> tuple[RowDoc, SpanDoc]:
    """The row (and its root span) of a case whose worker died while running it: an error."""
    plan = RowPlan(
        row_id=info["row_id"],
        nodeid=info["nodeid"],
        input=info["input"],
        params_hash=info["params_hash"],
        markers=info["markers"],
    )
    draft = RowDraft(
        plan=plan,
        execution=info["execution"],
        trace_id=info["trace_id"],
        span_id=info["span_id"],
        start=info["start"],
        error=ErrorInfo(type="WorkerCrash", message=message[:_MESSAGE_CHARS]),
    )
    fields = row_fields(draft, "error", attempt_id)
    row = row_version(draft, status="error", end=end, attempt_id=attempt_id, fields=fields)
    root = root_span(draft, status="error", end=end, attempt_id=attempt_id, experiment=experiment)
    return row, root


def with_subtests(error: ErrorInfo | None, failed: list[tuple[str, ErrorInfo]]) -> ErrorInfo:
    """A row's error when subtests failed: its own error if the test failed too, else the
    failed subtests' exception type (``SubtestFailures`` when they differ) and the first
    one's traceback; the message names every failed subtest with its message."""
    lines = [f"subtest {name} failed: {sub.type}: {sub.message}" for name, sub in failed]
    if error is not None:
        kind, traceback, lines = error.type, error.traceback, [error.message, *lines]
    else:
        kinds = {sub.type for _, sub in failed}
        kind = kinds.pop() if len(kinds) == 1 else "SubtestFailures"
        traceback = failed[0][1].traceback
    message = "\n".join(lines)
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 3] + "..."
    return ErrorInfo(type=kind, message=message, traceback=traceback)


def plain_error(report: pytest.TestReport) -> ErrorInfo:
    """A failure pytest reports without an exception (a strict XPASS, say)."""
    text = report.longreprtext or report.outcome
    kind = "XPASS(strict)" if "XPASS" in text else "Failed"
    return ErrorInfo(type=kind, message=storable_text(text[:_MESSAGE_CHARS]))


def error_info(excinfo: pytest.ExceptionInfo[BaseException], item: pytest.Item) -> ErrorInfo:
    """Exception type, message and a short traceback that starts in the test's file."""

    def from_test_file(info: pytest.ExceptionInfo[BaseException]) -> Any:
        # As pytest's own report does; honours __tracebackhide__, and leaves out unittest's
        # own frames (its assert methods) as pytest does for TestCase items.
        traceback = info.traceback.cut(path=item.path).filter(info)
        own = traceback.filter(lambda entry: not entry.frame.f_globals.get("__unittest"))
        return own or traceback

    try:
        traceback = str(excinfo.getrepr(style="short", chain=False, tbfilter=from_test_file))
    except Exception:  # a broken __repr__ somewhere in the frames
        traceback = ""
    if len(traceback) > _TRACEBACK_CHARS:
        traceback = "..." + traceback[-_TRACEBACK_CHARS:]
    try:
        message = str(excinfo.value)
    except Exception:
        message = f"<{excinfo.typename}: str() failed>"
    # Messages quote what the test saw: subprocess output, file names, text not UTF-8 can take.
    return ErrorInfo(
        type=storable_text(excinfo.typename),
        message=storable_text(message[:_MESSAGE_CHARS]),
        traceback=storable_text(traceback),
    )
